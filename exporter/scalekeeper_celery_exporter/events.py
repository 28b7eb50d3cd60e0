"""What Celery's events say about each queue, kept between scrapes. No I/O: the receiver feeds it events and
worker facts, the collector takes snapshots.

* executing: each worker's ``active`` count from its latest ``worker-heartbeat``, summed over the workers that
  consume the queue (a worker whose queues are not known yet makes the queue's count unknown);
* arrivals: ``task-sent`` (producers set ``task_send_sent_event``), which also gives each task id's queue;
* completions and failures: ``task-succeeded`` / ``task-failed``, on the queue ``task-sent`` gave their id,
  else on the queue of the worker that ran them when it consumes one queue only; runtimes of successes as a
  histogram.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# Celery workers send a heartbeat every 2 s unless told otherwise (the event carries its ``freq``); like
# Celery's own state (expire window 200 %), a worker unheard for two periods is gone.
DEFAULT_HEARTBEAT_SECONDS = 2.0
EXPIRE_PERIODS = 2.0
RUNTIME_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Task ids whose end is never seen (lost events, revoked tasks) must not grow the map without bound.
MAX_TRACKED_TASKS = 100_000
# A worker unheard for a while (the broker away: no heartbeat reaches anyone) keeps what it told of its queues
# this long: heard again under the same hostname, it is the same process, and its queues are known at once
# instead of asked again. A worker whose remote control has not come back after the broker's return (its
# consumer restarts, or does not: celery/celery#8030) would otherwise leave every queue's executing count
# missing.
RETAIN_INFO_SECONDS = 600.0


@dataclass
class WorkerInfo:
    queues: frozenset[str]
    # With acks_late off a task is acked when it starts: the broker no longer counts it while it runs.
    acks_late: bool


@dataclass
class _Worker:
    active: int
    freq: float
    seen: float


@dataclass
class Runtimes:
    buckets: list[int] = field(default_factory=lambda: [0] * len(RUNTIME_BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe(self, seconds: float) -> None:
        for i, bound in enumerate(RUNTIME_BUCKETS):
            if seconds <= bound:
                self.buckets[i] += 1
        self.count += 1
        self.total += seconds


@dataclass
class Snapshot:
    """Per queue; None where the events cannot tell (not listening long enough, the queues of a
    worker running tasks unknown)."""

    connected: bool
    executing: dict[str, int] | None
    # The part of executing whose messages the broker already forgot (workers with acks_late off).
    executing_acked: dict[str, int] | None
    per_worker: dict[str, int]
    unattributed_executing: int
    published: dict[str, int] | None
    completed: dict[str, int] | None
    failed: dict[str, int] | None
    runtimes: dict[str, Runtimes] | None
    unattributed_finished: int
    queues: set[str]


class EventState:
    def __init__(self, rate_window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate_window = rate_window
        self.clock = clock
        self._lock = threading.Lock()
        self._listening_since: float | None = None
        self._workers: dict[str, _Worker] = {}
        self._info: dict[str, WorkerInfo] = {}
        # Expired workers' info, with when they expired (see RETAIN_INFO_SECONDS).
        self._retired: dict[str, tuple[WorkerInfo, float]] = {}
        self._task_queue: OrderedDict[str, str] = OrderedDict()
        self._sent_seen = False
        self._published: Counter[str] = Counter()
        self._completed: Counter[str] = Counter()
        self._failed: Counter[str] = Counter()
        self._runtimes: dict[str, Runtimes] = {}
        self._unattributed_finished = 0

    def listening(self) -> None:
        """An event came back through the connection: from then on no event is missed. Said again on the
        same connection, it keeps the first time."""
        with self._lock:
            if self._listening_since is None:
                self._listening_since = self.clock()

    def deaf(self) -> None:
        """The event connection is lost: events sent from now on are lost."""
        with self._lock:
            self._listening_since = None

    def set_worker_info(self, hostname: str, info: WorkerInfo) -> None:
        with self._lock:
            self._info[hostname] = info

    def workers_without_info(self) -> list[str]:
        with self._lock:
            now = self.clock()
            return sorted(h for h, w in self._workers.items() if h not in self._info and self._alive(w, now))

    @staticmethod
    def _alive(w: _Worker, now: float) -> bool:
        return now - w.seen <= EXPIRE_PERIODS * w.freq

    def handle(self, event: Mapping[str, Any]) -> None:
        kind, hostname = event.get("type"), str(event.get("hostname", ""))
        with self._lock:
            now = self.clock()
            if kind == "worker-heartbeat" and hostname:
                freq = float(event.get("freq") or DEFAULT_HEARTBEAT_SECONDS)
                self._workers[hostname] = _Worker(int(event.get("active") or 0), freq, now)
                retired = self._retired.pop(hostname, None)
                if retired is not None:
                    self._info.setdefault(hostname, retired[0])
            elif kind == "worker-offline":
                # It said it is leaving: the same hostname heard later is a new process, to be asked again.
                self._workers.pop(hostname, None)
                self._info.pop(hostname, None)
                self._retired.pop(hostname, None)
            elif kind == "task-sent":
                self._sent_seen = True
                queue = str(event.get("queue") or event.get("routing_key") or "")
                if queue:
                    self._published[queue] += 1
                    self._remember(str(event.get("uuid", "")), queue)
            elif kind in ("task-succeeded", "task-failed"):
                self._finished(event, kind == "task-failed", hostname)

    def _remember(self, task_id: str, queue: str) -> None:
        self._task_queue[task_id] = queue
        if len(self._task_queue) > MAX_TRACKED_TASKS:
            self._task_queue.popitem(last=False)

    def _finished(self, event: Mapping[str, Any], failed: bool, hostname: str) -> None:
        queue = self._task_queue.pop(str(event.get("uuid", "")), None)
        if queue is None:
            info = self._info.get(hostname)
            queue = next(iter(info.queues)) if info and len(info.queues) == 1 else None
        if queue is None:
            self._unattributed_finished += 1
            return
        self._completed[queue] += 1
        if failed:
            self._failed[queue] += 1
        elif isinstance(event.get("runtime"), int | float):
            self._runtimes.setdefault(queue, Runtimes()).observe(float(event["runtime"]))

    def snapshot(self, queues: list[str]) -> Snapshot:
        with self._lock:
            now = self.clock()
            since = self._listening_since
            listened = -1.0 if since is None else now - since
            # Workers killed without a worker-offline event (pods deleted) are forgotten once expired, or
            # every pod name ever seen would stay here.
            for gone in [h for h, w in self._workers.items() if not self._alive(w, now)]:
                del self._workers[gone]
                info = self._info.pop(gone, None)
                if info is not None:
                    self._retired[gone] = (info, now)
            for old in [h for h, (_, at) in self._retired.items() if now - at > RETAIN_INFO_SECONDS]:
                del self._retired[old]
            alive = dict(self._workers)
            per_worker = {h: w.active for h, w in alive.items()}
            known = set(queues) | set(self._published) | set(self._completed)
            executing: dict[str, int] | None = None
            acked: dict[str, int] | None = None
            unattributed = 0
            # Until one heartbeat period has passed since listening began, a silent worker may still exist.
            # A worker whose queues are unknown counts only when it runs something: one that does not answer
            # remote control (a worker started while the broker was away may not) blinds no queue while idle.
            busy_unknown = any(w.active for h, w in alive.items() if h not in self._info)
            if listened >= EXPIRE_PERIODS * DEFAULT_HEARTBEAT_SECONDS and not busy_unknown:
                executing, acked = Counter(), Counter()
                for h, w in alive.items():
                    info = self._info.get(h)
                    if info is None:
                        continue
                    if len(info.queues) != 1:
                        unattributed += w.active
                        continue
                    (queue,) = info.queues
                    known.add(queue)
                    executing[queue] += w.active
                    if not info.acks_late:
                        acked[queue] += w.active
                executing = {q: executing.get(q, 0) for q in known}
                acked = {q: acked.get(q, 0) for q in known}
            # Counters restart with the exporter and miss what was sent while it was deaf: a rate over them is
            # only true once a whole window of them has been heard.
            full_window = listened >= self.rate_window
            return Snapshot(
                connected=since is not None,
                executing=executing,
                executing_acked=acked,
                per_worker=per_worker,
                unattributed_executing=unattributed,
                # Until a task-sent arrives, "no arrivals" cannot be told from "producers send no task-sent".
                published={q: self._published.get(q, 0) for q in known}
                if full_window and self._sent_seen
                else None,
                completed={q: self._completed.get(q, 0) for q in known} if full_window else None,
                failed={q: self._failed.get(q, 0) for q in known} if full_window else None,
                runtimes={q: self._copy(self._runtimes.get(q)) for q in known} if full_window else None,
                unattributed_finished=self._unattributed_finished,
                queues=known,
            )

    @staticmethod
    def _copy(r: Runtimes | None) -> Runtimes:
        return Runtimes() if r is None else Runtimes(list(r.buckets), r.count, r.total)
