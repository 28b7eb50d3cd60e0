"""The queue model: one Celery worker queue as a discrete-event system.

Tasks arrive, wait in the broker, are prefetched by worker pods (up to concurrency x
prefetchMultiplier each, spread round-robin), run on one of `concurrency` slots, and finish after
their drawn service time. Pods become ready `start_delay` seconds after a scale-up; a scale-down
stops a pod fetching, hands its prefetched tasks back to the broker and lets its running tasks
finish (Celery's warm shutdown).

Over a `Workload` held whole the model keeps every task's start and every pod (what the oracle and the
benchmarks read); over a `StreamFeed` it keeps only what is live (tasks arrived and not started, pods
not ended) and tells a `Recorder` each arrival and start, so its memory does not grow with the trace.
"""

from __future__ import annotations

import copy
import heapq
import math
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from .workload import Workload

RATE_WINDOW_SECONDS = 60.0  # like rate(...[1m]) in the default queries
RUNTIME_WINDOW_SECONDS = 300.0  # like the runtime queries' rate(...[5m])


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
    # The runtime of the tasks finished in the runtime window: mean and squared coefficient of variation,
    # None when none finished (as the runtime queries answer NaN then).
    service_seconds: float | None = None
    service_scv: float | None = None


class Recorder(Protocol):
    """Told of every task as it arrives and as it starts, in time order (see results.WaitStats)."""

    def arrived(self, arrival: float) -> None: ...

    def started(self, arrival: float, start: float) -> None: ...


class StreamFeed:
    """Tasks (arrival, service) in arrival order, drawn from an iterator as the models ask for them and
    kept until every model sharing the feed has taken them (`release`)."""

    def __init__(self, tasks: Iterable[tuple[float, float]]) -> None:
        self._tasks: Iterator[tuple[float, float]] = iter(tasks)
        self.base = 0  # the id of buffer[0]
        self.buffer: deque[tuple[float, float]] = deque()

    def arrival(self, task: int) -> float:
        """Task `task`'s arrival time; inf when the tasks have run out."""
        i = task - self.base
        while i >= len(self.buffer):
            nxt = next(self._tasks, None)
            if nxt is None:
                return math.inf
            self.buffer.append(nxt)
        return self.buffer[i][0]

    def service(self, task: int) -> float:
        return self.buffer[task - self.base][1]

    def release(self, before: int) -> None:
        """Tasks before `before` are taken by every model: forget them."""
        while self.base < before and self.buffer:
            self.buffer.popleft()
            self.base += 1


class _WorkloadFeed:
    def __init__(self, workload: Workload) -> None:
        self.arrivals = workload.arrivals
        self.services = workload.services

    def arrival(self, task: int) -> float:
        return self.arrivals[task] if task < len(self.arrivals) else math.inf

    def service(self, task: int) -> float:
        return self.services[task]


class QueueModel:
    """One worker queue under one rule, over a Workload (every task and pod kept) or a StreamFeed
    (with a Recorder; only what is live kept)."""

    def __init__(
        self,
        tasks: Workload | StreamFeed,
        concurrency: int,
        prefetch: int,
        start_delay: float,
        initial_replicas: int,
        recorder: Recorder | None = None,
    ) -> None:
        self.workload = tasks if isinstance(tasks, Workload) else None
        self.feed = _WorkloadFeed(tasks) if isinstance(tasks, Workload) else tasks
        whole = self.workload is not None
        self.recorder = recorder
        self.concurrency = concurrency
        self.capacity = concurrency * prefetch
        self.start_delay = start_delay
        self.broker: deque[int] = deque()
        self.next_task = 0  # the next task to arrive
        self.next_arrival = self.feed.arrival(0)
        self.pending: dict[int, tuple[float, float]] = {}  # arrival and service of tasks not started
        # Over a Workload: every pod ever (by ident) and each task's start, or None.
        self.pods: list[Pod] | None = [] if whole else None
        self.starts: list[float | None] | None = (
            [None] * len(self.workload.arrivals) if self.workload is not None else None
        )
        self.pod_count = 0
        self.ended_seconds = 0.0  # pod-seconds of the pods ended (over a StreamFeed)
        # The pods not yet ended, in ident order: a long run leaves thousands of ended pods
        # behind, and dispatching over them dominated the run time.
        self.live: dict[int, Pod] = {}
        self.arrived_recently: deque[float] = deque()  # arrival times within the rate window
        self.completions: deque[float] = deque()  # completion times within the rate window
        self.runtimes = RuntimeWindow()
        self.events: list[tuple[float, int, int, float]] = []  # (time, order, pod, service)
        self.seq = 0
        self.rr = 0
        for _ in range(initial_replicas):
            self._add_pod(0.0, ready_at=0.0)

    def copy(self) -> QueueModel:
        """An independent model in the same state, over a Workload (shared: it is never written)."""
        assert self.pods is not None and self.starts is not None and self.recorder is None
        twin = copy.copy(self)
        twin.broker = deque(self.broker)
        twin.pending = dict(self.pending)
        # An ended pod never changes again, so both models can hold the same one.
        twin.pods = [p if p.ended is not None else replace(p, buffer=deque(p.buffer)) for p in self.pods]
        twin.live = {i: twin.pods[i] for i in self.live}
        twin.starts = list(self.starts)
        twin.arrived_recently = deque(self.arrived_recently)
        twin.completions = deque(self.completions)
        twin.runtimes = self.runtimes.copy()
        twin.events = list(self.events)
        return twin

    def _add_pod(self, now: float, ready_at: float, created: float | None = None) -> None:
        pod = Pod(self.pod_count, now if created is None else created, ready_at)
        self.pod_count += 1
        if self.pods is not None:
            self.pods.append(pod)
        self.live[pod.ident] = pod
        if ready_at > now:
            self._push(ready_at, -1, 0.0)  # a wake-up for the dispatcher

    def _push(self, when: float, pod: int, service: float) -> None:
        self.seq += 1
        heapq.heappush(self.events, (when, self.seq, pod, service))

    @property
    def replicas(self) -> int:
        """Deployment replicas: pods neither terminating nor gone (ready or starting)."""
        return sum(1 for p in self.live.values() if not p.terminating)

    def scale_to(self, desired: int, now: float, *, started_ahead: bool = False) -> None:
        """Set the replicas. `started_ahead`: new pods were created start_delay ago (by a rule that
        knows the future) and are ready now; they are charged from then (but not before t=0, where
        the other rules' initial replicas are ready for free too)."""
        current = [p for p in self.live.values() if not p.terminating]
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
        del self.live[pod.ident]
        if self.pods is None:
            self.ended_seconds += now - pod.created

    def _dispatch(self, now: float) -> None:
        ready = [p for p in self.live.values() if p.ready(now)]
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
        for pod in self.live.values():
            while pod.buffer and pod.running < self.concurrency and pod.ended is None:
                task = pod.buffer.popleft()
                pod.running += 1
                arrival, service = self.pending.pop(task)
                if self.starts is not None:
                    self.starts[task] = now
                if self.recorder is not None:
                    self.recorder.started(arrival, now)
                self._push(now + service, pod.ident, service)

    def advance(self, until: float) -> None:
        """Process every arrival and event up to `until` (inclusive)."""
        while True:
            t_arrival = self.next_arrival
            t_event = self.events[0][0] if self.events else math.inf
            if min(t_arrival, t_event) > until:
                return
            if t_arrival <= t_event:
                task = self.next_task
                self.pending[task] = (t_arrival, self.feed.service(task))
                self.broker.append(task)
                _within_window(self.arrived_recently, t_arrival)
                if self.recorder is not None:
                    self.recorder.arrived(t_arrival)
                self.next_task = task + 1
                self.next_arrival = self.feed.arrival(task + 1)
                self._dispatch(t_arrival)
                continue
            now, _, pod_id, service = heapq.heappop(self.events)
            if pod_id >= 0:
                pod = self.live[pod_id]
                pod.running -= 1
                _within_window(self.completions, now)
                self.runtimes.add(now, service)
                if pod.terminating and pod.running == 0:
                    self._end(pod, now)
            self._dispatch(now)

    def observe(self, now: float) -> Observation:
        window = now - RATE_WINDOW_SECONDS
        for times in (self.arrived_recently, self.completions):
            while times and times[0] <= window:
                times.popleft()
        return Observation(
            waiting=len(self.broker),
            in_flight=sum(p.held for p in self.live.values()),
            arrival_rate=len(self.arrived_recently) / RATE_WINDOW_SECONDS,
            completion_rate=len(self.completions) / RATE_WINDOW_SECONDS,
            ready=sum(1 for p in self.live.values() if p.ready(now)),
            service_seconds=self.runtimes.mean(now),
            service_scv=self.runtimes.scv(now),
        )

    def pod_spans(self, horizon: float) -> tuple[tuple[float, float], ...]:
        """(created, ended) of every pod, ended capped at the horizon (over a Workload)."""
        assert self.pods is not None
        return tuple(
            (p.created, min(p.ended if p.ended is not None else horizon, horizon)) for p in self.pods
        )

    def replica_seconds(self, horizon: float) -> float:
        if self.pods is not None:
            return sum(end - created for created, end in self.pod_spans(horizon))
        return self.ended_seconds + sum(horizon - p.created for p in self.live.values())


def _within_window(times: deque[float], now: float) -> None:
    """Add `now`, dropping times a rate window before it: observe() would never count them."""
    times.append(now)
    window = now - RATE_WINDOW_SECONDS
    while times[0] <= window:
        times.popleft()


class RuntimeWindow:
    """The runtimes of the tasks finished within RUNTIME_WINDOW_SECONDS: their count and first two moments,
    kept as running sums."""

    def __init__(self) -> None:
        self.finished: deque[tuple[float, float]] = deque()  # (time, runtime)
        self.total = 0.0
        self.squares = 0.0

    def copy(self) -> RuntimeWindow:
        twin = RuntimeWindow()
        twin.finished, twin.total, twin.squares = deque(self.finished), self.total, self.squares
        return twin

    def add(self, now: float, runtime: float) -> None:
        self.finished.append((now, runtime))
        self.total += runtime
        self.squares += runtime * runtime
        self._expire(now)

    def _expire(self, now: float) -> None:
        while self.finished and self.finished[0][0] <= now - RUNTIME_WINDOW_SECONDS:
            _, runtime = self.finished.popleft()
            self.total -= runtime
            self.squares -= runtime * runtime
        if not self.finished:  # sums that drifted by rounding start again from zero
            self.total = self.squares = 0.0

    def mean(self, now: float) -> float | None:
        self._expire(now)
        return self.total / len(self.finished) if self.finished else None

    def scv(self, now: float) -> float | None:
        mean = self.mean(now)
        if mean is None or mean <= 0:
            return None
        return max(0.0, self.squares / len(self.finished) / (mean * mean) - 1.0)
