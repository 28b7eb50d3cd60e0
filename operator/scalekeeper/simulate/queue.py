"""The queue model: one Celery worker queue as a discrete-event system.

Tasks arrive, wait in the broker, are prefetched by worker pods (up to concurrency x
prefetchMultiplier each, spread round-robin), run on one of `concurrency` slots, and finish after
their drawn service time. Pods become ready `start_delay` seconds after a scale-up; a scale-down
stops a pod fetching, hands its prefetched tasks back to the broker and lets its running tasks
finish (Celery's warm shutdown).
"""

from __future__ import annotations

import bisect
import copy
import heapq
import math
from collections import deque
from dataclasses import dataclass, field, replace

from .workload import Workload

RATE_WINDOW_SECONDS = 60.0  # like rate(...[1m]) in the default queries


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
