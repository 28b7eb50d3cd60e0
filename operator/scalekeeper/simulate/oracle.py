"""The oracle: a rule that knows the future, for a floor under what any reactive rule can do
(`scalekeeper simulate --oracle`, bench/quality.py). It needs every task at hand: over a Workload."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import model
from .queue import QueueModel
from .results import RuleResult, late_allowance, rule_result
from .workload import Workload


@dataclass(frozen=True)
class OracleRun:
    result: RuleResult
    interval: float
    schedule: tuple[int, ...]  # ready replicas during [k * interval, (k + 1) * interval)
    infeasible: tuple[int, ...]  # intervals where even maxReplicas could not meet the target


def oracle_run(
    workload: Workload,
    worker: model.WorkerSpec,
    start_delay: float,
    horizon: float,
    target_wait: float,
    interval: float,
    *,
    quantile: float = 95.0,
    initial_replicas: int = 0,
    progress: Callable[[float], None] | None = None,
) -> OracleRun:
    """The fewest replicas that meet the wait target, chosen by a rule that knows the future.

    Time is cut into intervals of `interval` seconds; a task belongs to the interval it arrives
    in. At the start t of interval k, with the queue in the state the earlier choices left it,
    the oracle tries n = minReplicas, minReplicas + 1, ... maxReplicas and keeps the first n that
    is feasible: simulated on the same arrivals and service times, with n replicas ready at t
    (scale-ups were started `start_delay` earlier and are charged from then) and n held until
    t + interval + target_wait (by then every task of interval k has either started or waited
    longer than the target), every interval j <= k that still has tasks to start keeps its
    nearest-rank `quantile` wait within target_wait; and n is 0 only if no task is waiting and
    none arrives in interval k (else the tasks the percentile lets wait would wait forever).
    Intervals whose percentile is already over the target at t are past saving and not checked.
    If no n up to maxReplicas is feasible, maxReplicas is used and k is reported as infeasible.

    So n - 1 misses the target in every interval where n > minReplicas (the tests check this),
    and every interval's percentile wait is within the target unless it is reported infeasible.
    It is greedy, not a global optimum: a replica more in one interval could allow fewer later;
    and its scale-downs are warm shutdowns like everyone's, so prefetched tasks are redelivered.
    `progress` is called with the simulated time at each interval.
    """
    q = QueueModel(workload, worker.concurrency, worker.prefetch_multiplier, start_delay, initial_replicas)
    arrivals = workload.arrivals
    count = math.ceil(horizon / interval)
    # bounds[k]: the first task arriving at or after k * interval
    bounds = [bisect.bisect_left(arrivals, k * interval) for k in range(count + 1)]
    schedule: list[int] = []
    infeasible: list[int] = []
    replicas: list[tuple[float, int]] = [(0.0, initial_replicas)]
    scale_events = 0
    starts = q.starts
    assert starts is not None
    first_unstarted = 0  # every task before it has started
    for k in range(count):
        t0, t1 = k * interval, (k + 1) * interval
        if progress is not None:
            progress(t0)
        q.advance(t0)
        while first_unstarted < len(arrivals) and starts[first_unstarted] is not None:
            first_unstarted += 1
        step = _OracleStep(
            start=t0,
            lookahead_until=t1 + target_wait,
            # Nothing waiting and nothing arriving: the only case where zero replicas can do.
            idle=first_unstarted >= q.next_task and bounds[k + 1] == bounds[k],
            checked=tuple(
                (bounds[j], bounds[j + 1])
                for j in range(bisect.bisect_right(bounds, first_unstarted) - 1, k + 1)
                if not _past_saving(q, bounds[j], bounds[j + 1], t0, target_wait, quantile)
            ),
        )
        candidates = range(worker.min_replicas, worker.max_replicas + 1)
        chosen = next((n for n in candidates if _feasible(q, n, step, target_wait, quantile)), None)
        if chosen is None:
            chosen = worker.max_replicas
            infeasible.append(k)
        schedule.append(chosen)
        if chosen != q.replicas:
            q.scale_to(chosen, t0, started_ahead=True)
            scale_events += 1
            replicas.append((t0, chosen))
    q.advance(horizon)
    result = rule_result("oracle", q, horizon, target_wait, replicas, scale_events)
    return OracleRun(result, interval, tuple(schedule), tuple(infeasible))


def replay_schedule(
    workload: Workload,
    worker: model.WorkerSpec,
    start_delay: float,
    horizon: float,
    target_wait: float,
    interval: float,
    schedule: Sequence[int],
    *,
    name: str = "schedule",
    initial_replicas: int = 0,
) -> RuleResult:
    """Follow a replica schedule as the oracle does: schedule[k] replicas ready from k * interval
    (scale-ups started start_delay ahead); past the schedule's end the last value holds."""
    q = QueueModel(workload, worker.concurrency, worker.prefetch_multiplier, start_delay, initial_replicas)
    replicas: list[tuple[float, int]] = [(0.0, initial_replicas)]
    scale_events = 0
    for k, n in enumerate(schedule):
        t0 = k * interval
        if t0 >= horizon:
            break
        q.advance(t0)
        if n != q.replicas:
            q.scale_to(n, t0, started_ahead=True)
            scale_events += 1
            replicas.append((t0, n))
    q.advance(horizon)
    return rule_result(name, q, horizon, target_wait, replicas, scale_events)


@dataclass(frozen=True)
class _OracleStep:
    """What the oracle checks at the start of one interval."""

    start: float
    lookahead_until: float
    idle: bool
    checked: tuple[tuple[int, int], ...]  # task ranges [first, end) of the intervals to keep in target


def _feasible(q: QueueModel, n: int, step: _OracleStep, target_wait: float, quantile: float) -> bool:
    if n == 0 and not step.idle:
        return False
    trial = q.copy()
    trial.scale_to(n, step.start, started_ahead=True)
    trial.advance(step.lookahead_until)
    # At lookahead_until every task of the checked intervals that has not started is late.
    return all(
        _late(trial, first, end, math.inf, target_wait) <= late_allowance(end - first, quantile)
        for first, end in step.checked
    )


def _late(q: QueueModel, first: int, end: int, now: float, target_wait: float) -> int:
    """Tasks first..end-1 that waited longer than the target, or certainly will: not started
    and already waiting longer than the target at `now` (inf: every task not started)."""
    assert q.workload is not None and q.starts is not None
    arrivals, starts = q.workload.arrivals, q.starts
    late = 0
    for i in range(first, end):
        start = starts[i]
        if (now if start is None else start) - arrivals[i] > target_wait:
            late += 1
    return late


def _past_saving(
    q: QueueModel, first: int, end: int, now: float, target_wait: float, quantile: float
) -> bool:
    return _late(q, first, end, now, target_wait) > late_allowance(end - first, quantile)
