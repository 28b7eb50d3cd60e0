"""What one rule's run leaves behind, and the figures read from it.

Over a Workload every task's wait is kept (`RuleResult`: the oracle and the benchmarks read them); over a
stream only the figures are, gathered as the tasks go by (`WaitStats`, then `RuleSummary`: what
`scalekeeper simulate` prints). Both count alike:
  waits        from arrival to start; a task not started by the end of the run waits until then;
  percentiles  nearest rank: the value reported is one some task waited;
  minutes over the share of simulated minutes whose arriving tasks had a p95 wait over the target,
  target       by arrival minute as bench/quality.py counts (a minute whose tasks all wait for a pod
               not there yet has no starts, but its tasks are the ones that waited); minutes without
               arrivals never count;
  reversals    scale events that undo the previous one within 60 s: flapping.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .queue import QueueModel

MINUTE = 60.0
REVERSAL_SECONDS = 60.0  # a change of direction sooner than this after the previous change is a flap


@dataclass(frozen=True)
class RuleResult:
    name: str
    waits: tuple[float, ...]  # per task; unfinished ones count their wait up to the horizon
    starts: tuple[float | None, ...]
    replica_seconds: float
    scale_events: int
    undrained: int
    replicas: tuple[tuple[float, int], ...]  # (time, desired replicas) after every change
    minutes_over_target: int  # by arrival minute
    p95_by_minute: tuple[float | None, ...]  # p95 wait of the tasks arriving in each minute
    # (created, ended) of every pod, ended capped at the horizon: what replica_seconds adds up.
    pods: tuple[tuple[float, float], ...] = ()

    @property
    def replica_hours(self) -> float:
        return self.replica_seconds / 3600.0

    def percentile(self, q: float) -> float:
        return _percentile(sorted(self.waits), q)


@dataclass(frozen=True)
class RuleSummary:
    """One rule's figures, without its tasks."""

    name: str
    tasks: int
    wait_p50: float  # these three to 0.1 s
    wait_p95: float
    wait_max: float
    minutes_over_target: int
    minutes_with_arrivals: int
    replica_seconds: float
    scale_events: int
    reversals: int
    undrained: int
    replicas: tuple[tuple[float, int], ...]  # (time, desired replicas) after every change
    p95_by_minute: tuple[tuple[int, float], ...]  # (minute, p95 wait of the tasks arriving in it)

    @property
    def replica_hours(self) -> float:
        return self.replica_seconds / 3600.0


def _percentile(ordered: Sequence[float], q: float) -> float:
    # Nearest-rank: the reported value is one some task actually waited.
    if not ordered:
        return 0.0
    return ordered[_rank(len(ordered), q) - 1]


def _rank(n: int, q: float) -> int:
    return max(1, math.ceil(q / 100.0 * n))


def late_allowance(tasks: int, q: float) -> int:
    """How many of `tasks` may wait longer than a target with their nearest-rank q-th percentile
    wait still within it."""
    return tasks - _rank(tasks, q) if tasks else 0


def percentile_by_interval(
    arrivals: Sequence[float], waits: Sequence[float], interval: float, quantile: float = 95.0
) -> dict[int, float]:
    """The nearest-rank `quantile` wait of the tasks arriving in each interval k, [k * interval,
    (k + 1) * interval), for the intervals with arrivals, in order."""
    by_interval: dict[int, list[float]] = {}
    for arrival, wait in zip(arrivals, waits, strict=True):
        by_interval.setdefault(int(arrival // interval), []).append(wait)
    return {k: _percentile(sorted(w), quantile) for k, w in sorted(by_interval.items())}


def intervals_over_target(
    arrivals: Sequence[float],
    waits: Sequence[float],
    target_wait: float,
    interval: float,
    quantile: float = 95.0,
) -> tuple[int, ...]:
    """The intervals whose tasks' `quantile` wait is over the target; without arrivals, never."""
    by_interval = percentile_by_interval(arrivals, waits, interval, quantile)
    return tuple(k for k, wait in by_interval.items() if wait > target_wait)


def reversals(replicas: Sequence[tuple[float, int]], within: float = REVERSAL_SECONDS) -> int:
    """Changes in a (time, replicas) series that go the other way from the previous change, at most
    `within` seconds after it."""
    changes = [(t, n > before) for (_, before), (t, n) in itertools.pairwise(replicas) if n != before]
    return sum(1 for (t0, up0), (t1, up1) in itertools.pairwise(changes) if up0 != up1 and t1 - t0 <= within)


def rule_result(
    name: str,
    q: QueueModel,
    horizon: float,
    target_wait: float,
    replicas: list[tuple[float, int]],
    scale_events: int,
) -> RuleResult:
    """The run of a model over a Workload, every task kept."""
    assert q.workload is not None and q.starts is not None
    arrivals = q.workload.arrivals
    waits = tuple(
        (start if start is not None else horizon) - arrival
        for arrival, start in zip(arrivals, q.starts, strict=True)
    )
    by_minute = percentile_by_interval(arrivals, waits, MINUTE)
    return RuleResult(
        name=name,
        waits=waits,
        starts=tuple(q.starts),
        replica_seconds=q.replica_seconds(horizon),
        scale_events=scale_events,
        undrained=sum(1 for s in q.starts if s is None),
        replicas=tuple(replicas),
        minutes_over_target=sum(1 for v in by_minute.values() if v > target_wait),
        p95_by_minute=tuple(by_minute.get(m) for m in range(math.ceil(horizon / MINUTE))),
        pods=q.pod_spans(horizon),
    )


class WaitStats:
    """A rule's wait figures gathered as its tasks arrive and start (a queue.Recorder), in memory that
    grows with the tasks waiting, not with the trace: each wait counted to 0.1 s (all the table shows;
    rounding keeps the order, so a percentile of rounded waits is the rounded percentile), and each
    arrival minute's waits only until its last task has started."""

    def __init__(self, target_wait: float, quantile: float = 95.0) -> None:
        self.target_wait = target_wait
        self.quantile = quantile
        self.rounded: Counter[float] = Counter()
        self.tasks = 0
        self.undrained = 0
        self.open: dict[int, tuple[list[int], list[float]]] = {}  # minute -> ([arrived], waits)
        self.closed: dict[int, float] = {}  # minute -> its quantile wait
        self.swept = 0  # minutes before this one were closed if complete

    def arrived(self, arrival: float) -> None:
        self.tasks += 1
        minute = int(arrival // MINUTE)
        entry = self.open.get(minute)
        if entry is None:
            self.open[minute] = ([1], [])
        else:
            entry[0][0] += 1
        self._sweep(minute)

    def started(self, arrival: float, start: float) -> None:
        wait = start - arrival
        self.rounded[round(wait, 1)] += 1
        self.open[int(arrival // MINUTE)][1].append(wait)
        self._sweep(int(start // MINUTE))

    def finish(self, horizon: float, unstarted: Iterable[float]) -> None:
        """The run ended at `horizon` with tasks arrived at `unstarted` not started."""
        for arrival in unstarted:
            self.undrained += 1
            self.started(arrival, horizon)
        for minute in list(self.open):
            self._close(minute)

    def _sweep(self, minute: int) -> None:
        if minute <= self.swept:
            return
        self.swept = minute
        complete = [m for m, (n, waits) in self.open.items() if m < minute and len(waits) == n[0]]
        for m in complete:
            self._close(m)

    def _close(self, minute: int) -> None:
        _, waits = self.open.pop(minute)
        self.closed[minute] = _percentile(sorted(waits), self.quantile)

    def summary(
        self, name: str, replica_seconds: float, replicas: Sequence[tuple[float, int]], scale_events: int
    ) -> RuleSummary:
        assert not self.open, "finish() first"
        ordered = sorted(self.rounded)
        ranks = {q: _rank(self.tasks, q) for q in (50.0, 95.0)}
        found: dict[float, float] = {}
        seen = 0
        for value in ordered:
            seen += self.rounded[value]
            for q, rank in ranks.items():
                if q not in found and seen >= rank:
                    found[q] = value
        by_minute = tuple(sorted(self.closed.items()))
        return RuleSummary(
            name=name,
            tasks=self.tasks,
            wait_p50=found.get(50.0, 0.0),
            wait_p95=found.get(95.0, 0.0),
            wait_max=ordered[-1] if ordered else 0.0,
            minutes_over_target=sum(1 for _, v in by_minute if v > self.target_wait),
            minutes_with_arrivals=len(by_minute),
            replica_seconds=replica_seconds,
            scale_events=scale_events,
            reversals=reversals(replicas),
            undrained=self.undrained,
            replicas=tuple(replicas),
            p95_by_minute=by_minute,
        )


def summarize(
    result: RuleResult, arrivals: Sequence[float], horizon: float, target_wait: float
) -> RuleSummary:
    """The figures of a run whose tasks were kept (the oracle's), as WaitStats would gather them."""
    stats = WaitStats(target_wait)
    for arrival in arrivals:
        stats.arrived(arrival)
    for arrival, start in zip(arrivals, result.starts, strict=True):
        if start is not None:
            stats.started(arrival, start)
    stats.finish(horizon, (a for a, s in zip(arrivals, result.starts, strict=True) if s is None))
    return stats.summary(result.name, result.replica_seconds, result.replicas, result.scale_events)
