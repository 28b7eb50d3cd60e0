"""`scalekeeper simulate`: replay an arrival trace through the engine and a Celery queue model.

One worker queue is modelled as a discrete-event system: tasks arrive (Poisson within each
trace interval), wait in the broker, are prefetched by worker pods (up to concurrency x
prefetchMultiplier each, spread round-robin), run on one of `concurrency` slots, and finish
after a drawn service time. Pods become ready `--start-delay` seconds after a scale-up; a
scale-down stops a pod fetching, hands its prefetched tasks back to the broker and lets its
running tasks finish (Celery's warm shutdown).

The same arrivals and service times are replayed under three rules, side by side:
  scalekeeper  the policy's worker sizing and behavior, decided every intervalSeconds;
  hpa-default  the same sizing with the HPA's default behavior, decided every 15 s;
  keda-style   every 30 s, ceil(waiting / target) on waiting tasks only (what LLEN shows;
               prefetched tasks are invisible), scale-down only after a 300 s cooldown.
Optionally (`oracle_interval`) a fourth, `oracle`, which knows the future: see `oracle_run`.

Deterministic for a given --seed: all randomness is drawn up front from one seeded RNG.
"""

from __future__ import annotations

import argparse
import bisect
import copy
import csv
import heapq
import itertools
import math
import random
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from . import model
from .engine.decide import (
    ARRIVAL_RATE,
    COMPLETION_RATE,
    FORECAST_METRICS,
    IN_FLIGHT,
    WAITING,
    ObservedTarget,
    decide,
    worker_target,
)
from .engine.types import TargetHistory

HPA_SYNC_SECONDS = 15.0
KEDA_POLL_SECONDS = 30.0
KEDA_COOLDOWN_SECONDS = 300.0
RATE_WINDOW_SECONDS = 60.0  # like rate(...[1m]) in the default queries
DISTRIBUTIONS = ("exponential", "constant", "lognormal")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Trace:
    """Arrival counts per interval: interval i covers [starts[i], starts[i] + lengths[i])."""

    starts: tuple[float, ...]
    counts: tuple[float, ...]
    lengths: tuple[float, ...]

    @property
    def end(self) -> float:
        return self.starts[-1] + self.lengths[-1] if self.starts else 0.0


def parse_trace(text: str, step: float | None = None) -> Trace:
    """`t_seconds,arrivals` rows (header optional), or a bare column of counts with `step`."""
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if rows and not _is_number(rows[0][0]):
        rows = rows[1:]  # header
    if not rows:
        raise ValueError("trace has no rows")
    if all(len([c for c in r if c.strip()]) == 1 for r in rows):
        if step is None or step <= 0:
            raise ValueError("a trace with one column needs --step SECONDS")
        counts = tuple(float(r[0]) for r in rows)
        starts = tuple(i * step for i in range(len(counts)))
        return Trace(starts, _check_counts(counts), tuple(step for _ in counts))
    starts = tuple(float(r[0]) for r in rows)
    counts = _check_counts(tuple(float(r[1]) for r in rows))
    if any(b <= a for a, b in itertools.pairwise(starts)):
        raise ValueError("trace times must be strictly increasing")
    last = step if step is not None else (starts[-1] - starts[-2] if len(starts) > 1 else 60.0)
    lengths = (*(b - a for a, b in itertools.pairwise(starts)), last)
    return Trace(starts, counts, lengths)


def _check_counts(counts: tuple[float, ...]) -> tuple[float, ...]:
    if any(not math.isfinite(c) or c < 0 for c in counts):
        raise ValueError("arrival counts must be finite and >= 0")
    return counts


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class ServiceTime:
    mean_seconds: float
    distribution: str = "exponential"

    def draw(self, rng: random.Random) -> float:
        if self.distribution == "constant":
            return self.mean_seconds
        if self.distribution == "lognormal":
            # sigma 1: a long right tail (a few tasks 5-10x the mean), as real task mixes have.
            sigma = 1.0
            return rng.lognormvariate(math.log(self.mean_seconds) - sigma * sigma / 2, sigma)
        return rng.expovariate(1.0 / self.mean_seconds)


@dataclass(frozen=True)
class Workload:
    """Every random draw of a run, made once so each rule sees exactly the same tasks."""

    arrivals: tuple[float, ...]
    services: tuple[float, ...]


def make_workload(trace: Trace, service: ServiceTime, seed: int) -> Workload:
    rng = random.Random(seed)
    arrivals: list[float] = []
    for start, count, length in zip(trace.starts, trace.counts, trace.lengths, strict=True):
        if count <= 0:
            continue
        # A Poisson process at the interval's mean rate: exponential gaps until its end.
        rate = count / length
        t = start + rng.expovariate(rate)
        while t < start + length:
            arrivals.append(t)
            t += rng.expovariate(rate)
    services = tuple(service.draw(rng) for _ in arrivals)
    return Workload(tuple(arrivals), services)


# ---------------------------------------------------------------------- queue model


@dataclass
class Pod:
    ident: int
    created: float
    ready_at: float
    buffer: deque[int] = field(default_factory=deque)  # prefetched, not yet running
    running: int = 0
    terminating: bool = False
    ended: float | None = None

    def ready(self, now: float) -> bool:
        return self.ended is None and not self.terminating and self.ready_at <= now

    @property
    def held(self) -> int:
        return self.running + len(self.buffer)


@dataclass(frozen=True)
class Observation:
    waiting: int
    in_flight: int
    arrival_rate: float
    completion_rate: float
    # Pods ready to take tasks (a Deployment's readyReplicas): not starting, not terminating.
    ready: int


# A rule maps (now, current replicas, what the metrics show) to the desired replicas.
Decider = Callable[[float, int, Observation], int]


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


class QueueModel:
    """One worker queue under one rule."""

    def __init__(
        self,
        workload: Workload,
        concurrency: int,
        prefetch: int,
        start_delay: float,
        initial_replicas: int,
    ) -> None:
        self.work = workload
        self.concurrency = concurrency
        self.capacity = concurrency * prefetch
        self.start_delay = start_delay
        self.broker: deque[int] = deque()
        self.pods: list[Pod] = []  # every pod ever, by ident
        # The pods not yet ended, in ident order: a long run leaves thousands of ended pods
        # behind, and dispatching over them dominated the run time.
        self.live: list[Pod] = []
        self.starts: list[float | None] = [None] * len(workload.arrivals)
        self.completions: deque[float] = deque()
        self.events: list[tuple[float, int, int, int]] = []  # (time, order, pod, task)
        self.seq = 0
        self.rr = 0
        for _ in range(initial_replicas):
            self._add_pod(0.0, ready_at=0.0)

    def copy(self) -> QueueModel:
        """An independent model in the same state (the workload is shared: it is never written)."""
        twin = copy.copy(self)
        twin.broker = deque(self.broker)
        # An ended pod never changes again, so both models can hold the same one.
        twin.pods = [p if p.ended is not None else replace(p, buffer=deque(p.buffer)) for p in self.pods]
        twin.live = [twin.pods[p.ident] for p in self.live]
        twin.starts = list(self.starts)
        twin.completions = deque(self.completions)
        twin.events = list(self.events)
        return twin

    def _add_pod(self, now: float, ready_at: float, created: float | None = None) -> None:
        pod = Pod(len(self.pods), now if created is None else created, ready_at)
        self.pods.append(pod)
        self.live.append(pod)
        if ready_at > now:
            self._push(ready_at, -1, -1)  # a wake-up for the dispatcher

    def _push(self, when: float, pod: int, task: int) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, pod, task))

    @property
    def replicas(self) -> int:
        """Deployment replicas: pods neither terminating nor gone (ready or starting)."""
        return sum(1 for p in self.live if not p.terminating)

    def scale_to(self, desired: int, now: float, *, started_ahead: bool = False) -> None:
        """Set the replicas. `started_ahead`: new pods were created start_delay ago (by a rule that
        knows the future) and are ready now; they are charged from then (but not before t=0, where
        the other rules' initial replicas are ready for free too)."""
        current = [p for p in self.live if not p.terminating]
        if desired > len(current):
            for _ in range(desired - len(current)):
                if started_ahead:
                    self._add_pod(now, now, created=max(0.0, now - self.start_delay))
                else:
                    self._add_pod(now, now + self.start_delay)
        elif desired < len(current):
            # The ReplicaSet controller deletes not-ready pods first, then the least busy.
            order = sorted(current, key=lambda p: (p.ready_at <= now, p.held, -p.ident))
            for pod in order[: len(current) - desired]:
                self._stop(pod, now)
        self._dispatch(now)

    def _stop(self, pod: Pod, now: float) -> None:
        pod.terminating = True
        # Warm shutdown: prefetched tasks are not acked, so the broker redelivers them.
        self.broker.extendleft(reversed(pod.buffer))
        pod.buffer.clear()
        if pod.running == 0:
            self._end(pod, now)

    def _end(self, pod: Pod, now: float) -> None:
        pod.ended = now
        self.live.remove(pod)

    def _dispatch(self, now: float) -> None:
        ready = [p for p in self.live if p.ready(now)]
        if ready:
            # Round-robin one task at a time over pods with prefetch room, like a broker
            # delivering to consumers with credit left.
            n = len(ready)
            stalled = 0
            while self.broker and stalled < n:
                pod = ready[self.rr % n]
                self.rr += 1
                if pod.held < self.capacity:
                    pod.buffer.append(self.broker.popleft())
                    stalled = 0
                else:
                    stalled += 1
        for pod in self.live:
            while pod.buffer and pod.running < self.concurrency and pod.ended is None:
                task = pod.buffer.popleft()
                pod.running += 1
                self.starts[task] = now
                self._push(now + self.work.services[task], pod.ident, task)

    def advance(self, until: float, next_arrival: int) -> int:
        """Process every event up to `until` (inclusive); returns the next arrival index."""
        arrivals = self.work.arrivals
        while True:
            t_arrival = arrivals[next_arrival] if next_arrival < len(arrivals) else math.inf
            t_event = self.events[0][0] if self.events else math.inf
            if min(t_arrival, t_event) > until:
                return next_arrival
            if t_arrival <= t_event:
                self.broker.append(next_arrival)
                next_arrival += 1
                self._dispatch(t_arrival)
                continue
            now, _, pod_id, _task = heapq.heappop(self.events)
            if pod_id >= 0:
                pod = self.pods[pod_id]
                pod.running -= 1
                self.completions.append(now)
                if pod.terminating and pod.running == 0:
                    self._end(pod, now)
            self._dispatch(now)

    def observe(self, now: float, next_arrival: int) -> Observation:
        window = now - RATE_WINDOW_SECONDS
        arrived = next_arrival - bisect.bisect_right(self.work.arrivals, window, 0, next_arrival)
        while self.completions and self.completions[0] <= window:
            self.completions.popleft()
        in_flight = sum(p.held for p in self.live)
        return Observation(
            waiting=len(self.broker),
            in_flight=in_flight,
            arrival_rate=arrived / RATE_WINDOW_SECONDS,
            completion_rate=len(self.completions) / RATE_WINDOW_SECONDS,
            ready=sum(1 for p in self.live if p.ready(now)),
        )

    def pod_spans(self, horizon: float) -> tuple[tuple[float, float], ...]:
        return tuple(
            (p.created, min(p.ended if p.ended is not None else horizon, horizon)) for p in self.pods
        )

    def replica_seconds(self, horizon: float) -> float:
        return sum(end - created for created, end in self.pod_spans(horizon))


def run_rule(
    name: str,
    decider: Decider,
    interval: float,
    workload: Workload,
    worker: model.WorkerSpec,
    start_delay: float,
    horizon: float,
    target_wait: float,
    initial_replicas: int,
) -> RuleResult:
    q = QueueModel(workload, worker.concurrency, worker.prefetch_multiplier, start_delay, initial_replicas)
    replicas: list[tuple[float, int]] = [(0.0, initial_replicas)]
    scale_events = 0
    next_arrival = 0
    ticks = int(horizon // interval)
    for k in range(ticks + 1):
        now = k * interval
        next_arrival = q.advance(now, next_arrival)
        current = q.replicas
        desired = decider(now, current, q.observe(now, next_arrival))
        if desired != current:
            q.scale_to(desired, now)
            scale_events += 1
            replicas.append((now, desired))
    q.advance(horizon, next_arrival)
    return _rule_result(name, q, horizon, target_wait, replicas, scale_events)


def _rule_result(
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


# ----------------------------------------------------------------------------- rules


class SeriesHistory:
    """The load series as Prometheus would keep it, answering the forecast's three readings the way
    `model.Forecast.queries` asks Prometheus for them."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.values: list[float] = []

    def add(self, when: float, value: float) -> None:
        self.times.append(when)
        self.values.append(value)

    def _window(self, start: float, end: float) -> list[float]:
        lo = bisect.bisect_right(self.times, start)
        hi = bisect.bisect_right(self.times, end)
        return self.values[lo:hi]

    def forecast(self, now: float, season: float, lead: float) -> tuple[float | None, ...]:
        if not self.times or self.times[0] > now - season:
            return (None, None, None)  # less history than a season: Prometheus would answer nothing
        ahead = self._window(now - season, now - season + lead)
        before = self._window(now - season - lead, now - season)
        recent = self._window(now - lead, now)
        return (
            max(ahead) if ahead else None,
            sum(before) / len(before) if before else None,
            sum(recent) / len(recent) if recent else None,
        )


def engine_decider(spec: model.ScalingPolicySpec, worker: model.WorkerSpec) -> Decider:
    """The engine deciding one worker target, with its history carried between calls."""
    only = spec.model_copy(
        update={"web": None, "read_replicas": None, "connection_budget": None, "workers": [worker]}
    )
    name = worker_target(worker.queue)
    state: dict[str, TargetHistory] = {}
    history = SeriesHistory()

    def decide_now(now: float, current: int, obs: Observation) -> int:
        samples: dict[str, dict[str, tuple[float | None, float]]] = {
            name: {
                WAITING: (float(obs.waiting), now),
                IN_FLIGHT: (float(obs.in_flight), now),
                ARRIVAL_RATE: (obs.arrival_rate, now),
                COMPLETION_RATE: (obs.completion_rate, now),
            }
        }
        history.add(now, float(obs.waiting + obs.in_flight))
        if worker.forecast is not None:
            readings = history.forecast(now, worker.forecast.season_seconds, worker.forecast.lead_seconds)
            for metric, value in zip(FORECAST_METRICS, readings, strict=True):
                samples[name][metric] = (value, now)
        observed = {name: ObservedTarget(current, ready=obs.ready)}
        d = decide(only, observed, samples, {name: state.get(name)}, now).targets[name]
        state[name] = d.history
        return d.desired

    return decide_now


def keda_decider(worker: model.WorkerSpec) -> Decider:
    target = float(worker.effective_tasks_per_worker)
    recent: deque[tuple[float, int]] = deque()

    def decide_now(now: float, current: int, obs: Observation) -> int:
        # LLEN: only what still sits in the broker; prefetched and running tasks are not seen.
        wanted = math.ceil(obs.waiting / target) if obs.waiting > 0 else 0
        wanted = min(max(wanted, worker.min_replicas), worker.max_replicas)
        recent.append((now, wanted))
        while recent and recent[0][0] <= now - KEDA_COOLDOWN_SECONDS:
            recent.popleft()
        if wanted >= current:
            return wanted
        # Scale down only to the highest want of the cooldown period.
        return min(current, max(w for _, w in recent))

    return decide_now


# ------------------------------------------------------------------------ the oracle


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
    next_arrival = 0
    first_unstarted = 0  # every task before it has started
    for k in range(count):
        t0, t1 = k * interval, (k + 1) * interval
        next_arrival = q.advance(t0, next_arrival)
        while first_unstarted < len(arrivals) and q.starts[first_unstarted] is not None:
            first_unstarted += 1
        step = _OracleStep(
            start=t0,
            lookahead_until=t1 + target_wait,
            next_arrival=next_arrival,
            # Nothing waiting and nothing arriving: the only case where zero replicas can do.
            idle=first_unstarted >= next_arrival and bounds[k + 1] == bounds[k],
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
    q.advance(horizon, next_arrival)
    result = _rule_result("oracle", q, horizon, target_wait, replicas, scale_events)
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
    next_arrival = 0
    for k, n in enumerate(schedule):
        t0 = k * interval
        if t0 >= horizon:
            break
        next_arrival = q.advance(t0, next_arrival)
        if n != q.replicas:
            q.scale_to(n, t0, started_ahead=True)
            scale_events += 1
            replicas.append((t0, n))
    q.advance(horizon, next_arrival)
    return _rule_result(name, q, horizon, target_wait, replicas, scale_events)


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


@dataclass(frozen=True)
class _OracleStep:
    """What the oracle checks at the start of one interval."""

    start: float
    lookahead_until: float
    next_arrival: int
    idle: bool
    checked: tuple[tuple[int, int], ...]  # task ranges [first, end) of the intervals to keep in target


def _feasible(q: QueueModel, n: int, step: _OracleStep, target_wait: float, quantile: float) -> bool:
    if n == 0 and not step.idle:
        return False
    trial = q.copy()
    trial.scale_to(n, step.start, started_ahead=True)
    trial.advance(step.lookahead_until, step.next_arrival)
    # At lookahead_until every task of the checked intervals that has not started is late.
    return all(
        _late(trial, first, end, math.inf, target_wait) <= late_allowance(end - first, quantile)
        for first, end in step.checked
    )


def _late(q: QueueModel, first: int, end: int, now: float, target_wait: float) -> int:
    """Tasks first..end-1 that waited longer than the target, or certainly will: not started
    and already waiting longer than the target at `now` (inf: every task not started)."""
    arrivals = q.work.arrivals
    late = 0
    for i in range(first, end):
        start = q.starts[i]
        if (now if start is None else start) - arrivals[i] > target_wait:
            late += 1
    return late


def _past_saving(
    q: QueueModel, first: int, end: int, now: float, target_wait: float, quantile: float
) -> bool:
    return _late(q, first, end, now, target_wait) > late_allowance(end - first, quantile)


# ------------------------------------------------------------------------ the run


@dataclass(frozen=True)
class Simulation:
    trace: Trace
    results: tuple[RuleResult, ...]
    horizon: float
    target_wait: float
    workload: Workload
    oracle: OracleRun | None = None


def simulate(
    spec: model.ScalingPolicySpec,
    queue: str | None,
    trace: Trace,
    service: ServiceTime,
    *,
    seed: int = 1,
    start_delay: float = 20.0,
    target_wait: float = 30.0,
    tail_seconds: float = 1800.0,
    initial_replicas: int | None = None,
    oracle_interval: float | None = None,
    variants: Sequence[tuple[str, model.WorkerSpec]] = (),
) -> Simulation:
    """Replay the trace under every rule; with `oracle_interval`, the oracle (`oracle_run`) too.
    `variants`: more scalekeeper rules, each the policy with the worker replaced (name, worker)."""
    worker = select_worker(spec, queue)
    workload = make_workload(trace, service, seed)
    horizon = trace.end + tail_seconds
    initial = worker.min_replicas if initial_replicas is None else initial_replicas
    default_worker = worker.model_copy(update={"behavior": model.Behavior()})
    rules: list[tuple[str, Decider, float]] = [
        ("scalekeeper", engine_decider(spec, worker), float(spec.interval_seconds)),
        ("hpa-default", engine_decider(spec, default_worker), HPA_SYNC_SECONDS),
        ("keda-style", keda_decider(worker), KEDA_POLL_SECONDS),
        *((name, engine_decider(spec, w), float(spec.interval_seconds)) for name, w in variants),
    ]
    results = tuple(
        run_rule(name, decider, interval, workload, worker, start_delay, horizon, target_wait, initial)
        for name, decider, interval in rules
    )
    if oracle_interval is None:
        return Simulation(trace, results, horizon, target_wait, workload)
    oracle = oracle_run(
        workload, worker, start_delay, horizon, target_wait, oracle_interval, initial_replicas=initial
    )
    return Simulation(trace, (*results, oracle.result), horizon, target_wait, workload, oracle)


def select_worker(spec: model.ScalingPolicySpec, queue: str | None) -> model.WorkerSpec:
    workers = spec.workers or []
    if not workers:
        raise ValueError("the policy has no workers to simulate")
    if queue is None:
        if len(workers) > 1:
            names = ", ".join(w.queue for w in workers)
            raise ValueError(f"the policy has several queues ({names}); pick one with --queue")
        return workers[0]
    for w in workers:
        if w.queue == queue:
            return w
    raise ValueError(f"no worker for queue {queue!r} in the policy")


def format_table(sim: Simulation) -> str:
    over = f"min>{sim.target_wait:g}s"
    header = (
        f"{'rule':<12} {'wait p50':>9} {'wait p95':>9} {'wait max':>9} "
        f"{over:>9} {'replica-h':>10} {'scale events':>12} {'undrained':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in sim.results:
        lines.append(
            f"{r.name:<12} {r.percentile(50):>8.1f}s {r.percentile(95):>8.1f}s {r.percentile(100):>8.1f}s "
            f"{r.minutes_over_target:>9d} {r.replica_hours:>10.2f} {r.scale_events:>12d} {r.undrained:>9d}"
        )
    return "\n".join(lines)


def plot(sim: Simulation, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = sim.horizon / 60.0
    fig, (ax_load, ax_rep, ax_wait) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    xs: list[float] = []
    ys: list[float] = []
    for start, count, length in zip(sim.trace.starts, sim.trace.counts, sim.trace.lengths, strict=True):
        xs += [start / 60.0, (start + length) / 60.0]
        ys += [count / length, count / length]
    ax_load.plot(xs, ys, color="black", linewidth=1.2)
    ax_load.set_ylabel("arrivals (tasks/s)")
    ax_load.set_title("load, replicas and task waiting time per rule")
    # Wider lines underneath, so a rule hidden behind another still shows at its edges.
    styles = {
        "scalekeeper": ("tab:blue", 1.4, "-"),
        "hpa-default": ("tab:orange", 2.6, "-"),
        "keda-style": ("tab:green", 3.8, "-"),
        "oracle": ("black", 1.0, "--"),
    }
    for r in reversed(sim.results):
        color, width, dash = styles.get(r.name, ("gray", 1.5, "-"))
        ts = [t / 60.0 for t, _ in r.replicas] + [minutes]
        ns = [n for _, n in r.replicas] + [r.replicas[-1][1]]
        ax_rep.step(
            ts, ns, where="post", label=r.name, color=color, linewidth=width, linestyle=dash, alpha=0.85
        )
        mins = [i + 0.5 for i, v in enumerate(r.p95_by_minute) if v is not None]
        vals = [v for v in r.p95_by_minute if v is not None]
        ax_wait.plot(mins, vals, marker=".", markersize=3, linewidth=width / 2, label=r.name, color=color)
    ax_rep.set_ylabel("desired replicas")
    ax_rep.legend(loc="upper right")
    ax_wait.axhline(sim.target_wait, color="red", linestyle="--", linewidth=1, label="target wait")
    ax_wait.set_ylabel("p95 wait of tasks started (s)")
    ax_wait.set_xlabel("minutes")
    ax_wait.legend(loc="upper right")
    for ax in (ax_load, ax_rep, ax_wait):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, minutes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- CLI


def load_policy(path: Path) -> tuple[model.ScalingPolicySpec, dict[str, Any]]:
    """The spec (from a ScalingPolicy manifest or a bare spec) and its `simulation` block.

    The simulation block may sit at the top level of the file or, to keep the manifest
    applicable, as YAML in the annotation scalekeeper.dev/simulation.
    """
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping")
    sim: Any = doc.get("simulation") or {}
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    if not sim and f"{model.GROUP}/simulation" in annotations:
        sim = yaml.safe_load(annotations[f"{model.GROUP}/simulation"]) or {}
    if not isinstance(sim, dict):
        raise ValueError(f"{path}: simulation must be a mapping")
    spec = model.parse_spec(
        doc["spec"] if "spec" in doc else {k: v for k, v in doc.items() if k != "simulation"}
    )
    return spec, sim


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scalekeeper simulate",
        description="Replay an arrival trace through the engine and a Celery queue model, and compare "
        "scalekeeper's rules with the HPA defaults and a KEDA-style rule.",
    )
    p.add_argument("--policy", required=True, type=Path, help="ScalingPolicy manifest or spec (YAML)")
    p.add_argument(
        "--trace", required=True, type=Path, help="CSV of t_seconds,arrivals (or one column with --step)"
    )
    p.add_argument("--plot", type=Path, help="write a PNG of load, replicas and waits here")
    p.add_argument("--queue", help="the worker queue to simulate (needed when the policy has several)")
    p.add_argument("--step", type=float, help="interval length in seconds for a one-column trace")
    p.add_argument("--service-seconds", type=float, help="mean task service time (default: policy, else 1)")
    p.add_argument("--service-distribution", choices=DISTRIBUTIONS, help="default: policy, else exponential")
    p.add_argument("--start-delay", type=float, help="seconds from scale-up to a ready pod (default 20)")
    p.add_argument(
        "--target-wait", type=float, default=30.0, help="waiting-time target in seconds (default 30)"
    )
    p.add_argument(
        "--tail", type=float, default=1800.0, help="seconds simulated after the trace ends (default 1800)"
    )
    p.add_argument("--initial-replicas", type=int, help="replicas at t=0 (default: the worker's minReplicas)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec, sim_block = load_policy(args.policy)
        trace = parse_trace(args.trace.read_text(), args.step)
        mean = args.service_seconds or float(sim_block.get("serviceSeconds", 1.0))
        dist = args.service_distribution or str(sim_block.get("serviceDistribution", "exponential"))
        if dist not in DISTRIBUTIONS:
            raise ValueError(f"serviceDistribution must be one of {', '.join(DISTRIBUTIONS)}")
        if not mean > 0:
            raise ValueError("service time must be > 0")
        start_delay = args.start_delay
        if start_delay is None:
            start_delay = float(sim_block.get("startDelaySeconds", 20.0))
        result = simulate(
            spec,
            args.queue,
            trace,
            ServiceTime(mean, dist),
            seed=args.seed,
            start_delay=start_delay,
            target_wait=args.target_wait,
            tail_seconds=args.tail,
            initial_replicas=args.initial_replicas,
        )
    except (OSError, ValueError, model.SpecError, yaml.YAMLError) as exc:
        print(f"scalekeeper simulate: {exc}", file=sys.stderr)
        return 2
    worker = select_worker(spec, args.queue)
    print(
        f"queue {worker.queue}: {len(result.results[0].waits)} tasks over "
        f"{trace.end / 60:g} min (+{args.tail / 60:g} min tail), service {dist} mean {mean:g}s, "
        f"concurrency {worker.concurrency} x prefetch {worker.prefetch_multiplier}, "
        f"start delay {start_delay:g}s, seed {args.seed}"
    )
    print(format_table(result))
    if args.plot is not None:
        plot(result, args.plot)
        print(f"plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
