"""What one rule's run left behind: each task's wait, and the statistics read from them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .queue import QueueModel


@dataclass(frozen=True)
class RuleResult:
    name: str
    waits: tuple[float, ...]  # per task; unfinished ones count their wait up to the horizon
    starts: tuple[float | None, ...]
    replica_seconds: float
    scale_events: int
    undrained: int
    replicas: tuple[tuple[float, int], ...]  # (time, desired replicas) after every change
    minutes_over_target: int
    p95_by_minute: tuple[float | None, ...]
    # (created, ended) of every pod, ended capped at the horizon: what replica_seconds adds up.
    pods: tuple[tuple[float, float], ...] = ()

    @property
    def replica_hours(self) -> float:
        return self.replica_seconds / 3600.0

    def percentile(self, q: float) -> float:
        return _percentile(sorted(self.waits), q)


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


def rule_result(
    name: str,
    q: QueueModel,
    horizon: float,
    target_wait: float,
    replicas: list[tuple[float, int]],
    scale_events: int,
) -> RuleResult:
    workload = q.work
    waits = tuple(
        (start if start is not None else horizon) - arrival
        for arrival, start in zip(workload.arrivals, q.starts, strict=True)
    )
    minutes = math.ceil(horizon / 60.0)
    by_minute: list[list[float]] = [[] for _ in range(minutes)]
    for wait, start in zip(waits, q.starts, strict=True):
        if start is not None:
            by_minute[min(int(start // 60), minutes - 1)].append(wait)
    p95 = tuple(_percentile(sorted(w), 95) if w else None for w in by_minute)
    return RuleResult(
        name=name,
        waits=waits,
        starts=tuple(q.starts),
        replica_seconds=q.replica_seconds(horizon),
        scale_events=scale_events,
        undrained=sum(1 for s in q.starts if s is None),
        replicas=tuple(replicas),
        minutes_over_target=sum(1 for v in p95 if v is not None and v > target_wait),
        p95_by_minute=p95,
        pods=q.pod_spans(horizon),
    )
