"""When each policy's cycle runs: one loop for every policy, instead of a kopf daemon per policy.

`Schedule` is the timetable alone (pure: times in, policy uids out). `PolicyScheduler` keeps the policies
the policy informer reports (kube/informer.py), runs the timetable on the event loop and hands each due
cycle to a worker thread, no more at once than there are workers.

Why not a daemon per policy: at 3,000 policies the daemons were 3,000 asyncio tasks waking on timers,
each holding kopf's copy of its policy's whole body (managedFields included) and costing kopf a
finalizer on every policy (patched in at start, 429s when many start together; a policy stuck on
uninstall). Here each policy is a packed compact body and a heap entry, and its memory while this replica
serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .engine.handover import Step
from .engine.ring import HashRing
from .kube.packed import pack, unpack
from .memory import PolicyMemory
from .model.base import LEGACY_FINALIZER
from .policy import interval_of, lookups_of

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("scalekeeper.scheduler")


@dataclass
class _Slot:
    interval: float
    due: float
    seq: int
    running: bool = False
    # Woken (its spec changed) while its cycle ran: due again as soon as that cycle ends.
    rerun: bool = False


class Schedule:
    """The timetable: which policy's cycle is due when. A cycle starts every `interval` seconds after the
    previous one started (not after it ended, so a slow cycle does not stretch the cadence), never two of
    one policy at once; a policy behind its time is due now, once, not once per missed interval."""

    def __init__(self) -> None:
        self._slots: dict[str, _Slot] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0

    def __contains__(self, uid: str) -> bool:
        return uid in self._slots

    def add(self, uid: str, interval: float, due: float) -> None:
        if uid in self._slots:
            self._slots[uid].interval = interval
            return
        self._slots[uid] = _Slot(interval, due, 0)
        self._push(uid, due)

    def set_interval(self, uid: str, interval: float) -> None:
        self._slots[uid].interval = interval

    def wake(self, uid: str, now: float) -> None:
        """Due now (its spec changed): at once if idle, right after its running cycle otherwise."""
        slot = self._slots[uid]
        if slot.running:
            slot.rerun = True
        elif slot.due > now:
            self._push(uid, now)

    def remove(self, uid: str) -> None:
        self._slots.pop(uid, None)

    def next_due(self) -> float | None:
        """The earliest due time of an idle policy; None when there is none."""
        while self._heap:
            due, seq, uid = self._heap[0]
            slot = self._slots.get(uid)
            if slot is not None and slot.seq == seq and not slot.running:
                return due
            heapq.heappop(self._heap)  # removed, rescheduled since, or running
        return None

    def pop_due(self, now: float) -> tuple[str, float] | None:
        """The policy whose cycle is most overdue and when it fell due, marked running; None when none is
        due."""
        due = self.next_due()
        if due is None or due > now:
            return None
        _, _, uid = heapq.heappop(self._heap)
        self._slots[uid].running = True
        return uid, due

    def finished(self, uid: str, started: float, now: float) -> None:
        slot = self._slots.get(uid)
        if slot is None:
            return  # removed while it ran
        slot.running = False
        due = now if slot.rerun else max(started + slot.interval, now)
        slot.rerun = False
        self._push(uid, due)

    def _push(self, uid: str, due: float) -> None:
        slot = self._slots[uid]
        self._seq += 1
        slot.due, slot.seq = due, self._seq
        heapq.heappush(self._heap, (due, self._seq, uid))


def compact_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a cycle reads of a policy (its identity, spec and status) and what the scheduler reads of its
    lifecycle (deletionTimestamp, finalizers). Not managedFields (half of a policy's body), annotations or
    labels."""
    meta = body.get("metadata") or {}
    kept = (
        "name",
        "namespace",
        "uid",
        "generation",
        "creationTimestamp",
        "resourceVersion",
        "deletionTimestamp",
        "finalizers",
    )
    return {
        "metadata": {key: meta[key] for key in kept if key in meta},
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }


@dataclass(frozen=True, slots=True)
class SeenPolicy:
    """A policy body from the watch, as the informer's thread hands it to the event loop: what the
    scheduler reads of it at once, and its compact body packed.

    Packed there, not on the loop, for memory's sake: a start or a burst of status writes queues thousands
    of bodies for the loop, and queued as dicts (21 KB each with a bench policy's status) they spread over
    the allocator's arenas, where the small objects the loop keeps meanwhile pin them once the dicts are
    freed. bench.seen_memory at 3,000 policies (listed, then three status writes of each): 226 MiB of
    arenas holding 34 MiB live; packed on the informer's thread, 77 MiB."""

    uid: str
    namespace: str
    name: str
    generation: Any
    served_by: str
    deleting: bool
    legacy_finalizer: bool
    packed: bytes


def seen_policy(body: Mapping[str, Any]) -> SeenPolicy:
    compact = compact_body(body)
    meta = compact["metadata"]
    return SeenPolicy(
        uid=str(meta.get("uid") or ""),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        generation=meta.get("generation"),
        served_by=served_by(compact),
        deleting=bool(meta.get("deletionTimestamp")),
        legacy_finalizer=LEGACY_FINALIZER in (meta.get("finalizers") or ()),
        packed=pack(compact),
    )


class _Policy:
    """A policy as the scheduler keeps it: its compact body packed (compressed JSON: about 1.5 KB for the
    bench's five-target policy, 21 KB as dicts with its status), its interval, and, while this replica
    serves it, its memory (the parsed spec and tiers among it: about 35 KB live). Every replica keeps every
    policy, and with several replicas most are another's, read only for their servedBy and generation;
    a served one is unpacked once a cycle, a fraction of a millisecond beside a cycle's few."""

    __slots__ = (
        "_interval",
        "_packed",
        "_stamp",
        "_version",
        "generation",
        "lookups",
        "memory",
        "name",
        "namespace",
        "served_by",
    )

    def __init__(self, seen: SeenPolicy) -> None:
        self.memory: PolicyMemory | None = None
        # (generation, claim keys, watched-object keys): recomputed only when the spec changes.
        self.lookups: tuple[Any, list[str], list[str]] | None = None
        self._packed = b""
        self._interval: tuple[Any, float] | None = None
        # The resourceVersion our last status write left, newer than the packed body's until the watch
        # brings that write; `_stamp` counts the bodies the watch brought, to tell whether one came since.
        self._version: str | None = None
        self._stamp = 0
        self.served_by = ""
        self.generation: Any = None
        self.namespace, self.name = seen.namespace, seen.name
        self.replace(seen)

    @property
    def body(self) -> dict[str, Any]:
        """A fresh copy of the compact body, at the newest resourceVersion known."""
        body = unpack(self._packed)
        if self._version is not None:
            body["metadata"]["resourceVersion"] = self._version
        return body

    @property
    def stamp(self) -> int:
        return self._stamp

    def replace(self, seen: SeenPolicy) -> None:
        """The body the watch (or a claim) brought: it replaces everything, our written version too."""
        self.served_by, self.generation, self._packed = seen.served_by, seen.generation, seen.packed
        self._version = None
        self._stamp += 1

    def wrote(self, stamp: int, version: str | None) -> None:
        """A cycle begun at `stamp` left the policy at `version`: the next cycle writes at it, unless the
        watch brought a body since (that one is as new, or newer)."""
        if stamp == self._stamp and version:
            self._version = version

    def interval(self) -> float:
        """Seconds between its cycles, worked out once per generation (served or not)."""
        if self._interval is None or self._interval[0] != self.generation:
            self._interval = (self.generation, interval_of(self.body, self.memory or PolicyMemory()))
        return self._interval[1]

    def set_served(self, served: bool) -> None:
        """Served: with a memory (restored from its status at its first cycle). Not: the memory dropped,
        since its next server keeps its own."""
        if served and self.memory is None:
            self.memory = PolicyMemory()
        elif not served:
            self.memory = None


def served_by(body: Mapping[str, Any]) -> str:
    return str((body.get("status") or {}).get("servedBy") or "")


class PolicyScheduler:
    def __init__(self, runtime: Runtime, clock: Callable[[], float] = time.monotonic) -> None:
        self._runtime = runtime
        self._clock = clock
        self._schedule = Schedule()
        self._policies: dict[str, _Policy] = {}
        self._changed: asyncio.Event | None = None
        # Built on the event loop (kopf's startup handler): the membership thread reports ring changes to it,
        # the first possibly before run() has started.
        self._loop = asyncio.get_running_loop()
        self._running: set[asyncio.Task[None]] = set()
        self._stopping = False
        # The policies this replica serves (their status names it).
        self._served: set[str] = set()
        # Policies whose legacy finalizer is being removed (once at a time each), with the task doing it:
        # held here, as the event loop keeps only weak references to its tasks.
        self._unfinalizing: dict[str, asyncio.Future[None]] = {}

    # The policy informer's listener (kube/informer.py), called on its thread: each body is packed there
    # (SeenPolicy) and handed to the event loop, in the order the watch brought them.
    def seen(self, body: Mapping[str, Any]) -> None:
        self._loop.call_soon_threadsafe(self.observe, seen_policy(body))

    def gone(self, body: Mapping[str, Any]) -> None:
        meta = body.get("metadata") or {}
        uid, namespace, name = (str(meta.get(key) or "") for key in ("uid", "namespace", "name"))
        self._loop.call_soon_threadsafe(self.forget, uid, namespace, name)

    def listed(self, uids: set[str], covers: Callable[[str], bool]) -> None:
        self._loop.call_soon_threadsafe(self._keep_only, uids, covers)

    def observe(self, seen: SeenPolicy) -> None:
        """A policy as listed, added or modified, on the event loop."""
        uid = seen.uid
        if not uid:
            return
        if seen.legacy_finalizer:
            self._drop_legacy_finalizer(uid, seen.namespace, seen.name)
        if seen.deleting:
            self.forget(uid, seen.namespace, seen.name)
            return
        now = self._clock()
        known = self._policies.get(uid)
        if known is None:
            known = self._policies[uid] = _Policy(seen)
            interval = known.interval()
            delay = self._runtime.first_cycle_delay(uid, interval)
            self._schedule.add(uid, interval, now + delay)
            self._runtime.metrics.policies.inc()
        else:
            changed = known.generation != seen.generation
            # Released by its server, or claimed by another: this replica may have a step to take now.
            changed = changed or known.served_by != seen.served_by
            known.replace(seen)
            self._schedule.set_interval(uid, known.interval())
            if changed:
                self._schedule.wake(uid, now)
        if self._changed is not None:
            self._changed.set()

    def forget(self, uid: str, namespace: str, name: str) -> None:
        """A policy deleted (or being deleted): no more cycles, its series and memory dropped."""
        if uid and self._policies.pop(uid, None) is not None:
            self._schedule.remove(uid)
            self._set_served(uid, False)
            self._runtime.metrics.policies.dec()
            self._runtime.metrics.forget_policy(namespace, name)

    def _keep_only(self, uids: set[str], covers: Callable[[str], bool]) -> None:
        """After a relist: a policy of the listed namespaces that the list did not bring was deleted while
        nobody watched."""
        for uid, policy in list(self._policies.items()):
            if uid not in uids and covers(policy.namespace):
                self.forget(uid, policy.namespace, policy.name)

    def _drop_legacy_finalizer(self, uid: str, namespace: str, name: str) -> None:
        """Earlier builds (a kopf daemon per policy) put a finalizer on every policy; nothing needs it now,
        and left there it would keep a deleted policy forever."""
        if uid in self._unfinalizing:
            return
        task = asyncio.ensure_future(
            asyncio.to_thread(self._runtime.drop_finalizer, namespace, name, LEGACY_FINALIZER)
        )
        self._unfinalizing[uid] = task
        task.add_done_callback(lambda _: self._unfinalizing.pop(uid, None))

    def ring_changed(self, before: HashRing, after: HashRing) -> None:
        """From the membership's thread: the policies whose owner changed are due now (a release or a
        claim to make), the others keep their time."""
        self._loop.call_soon_threadsafe(self._wake_moved, before, after)

    def _wake_moved(self, before: HashRing, after: HashRing) -> None:
        self._runtime.metrics.ring_changes.inc()
        self._runtime.metrics.members.set(len(after.members))
        now = self._clock()
        for uid in self._policies:
            if before.owner(uid) != after.owner(uid):
                self._schedule.wake(uid, now)
        if self._changed is not None:
            self._changed.set()

    async def drain(self, timeout: float) -> None:
        """On shutdown: start no cycle, let those under way finish, then release every policy served,
        so the replicas that take them need not wait for this one's Lease to expire."""
        self._stopping = True
        if self._changed is not None:
            self._changed.set()
        if self._running:
            await asyncio.wait(self._running, timeout=timeout)
        if self._running:
            return  # a cycle still under way may yet write: its policies wait out this replica's Lease
        bodies = [self._policies[uid].body for uid in self._served if uid in self._policies]
        # As many at once as the executor runs (max_workers): a thousand policies go in seconds.
        done = await asyncio.gather(
            *(asyncio.to_thread(self._runtime.hand_over, body, "") for body in bodies), return_exceptions=True
        )
        failed = [r for r in done if isinstance(r, BaseException)]
        if failed:
            # Those wait out this replica's Lease on the replica that takes them.
            log.warning(
                "releasing policies on shutdown failed",
                extra={"failed": len(failed), "first": str(failed[0])},
            )
        self._served.clear()
        self._runtime.metrics.policies_served.set(0)

    async def run(self) -> None:
        """Run due cycles until cancelled; at most `max_workers` at once (the default executor's size)."""
        self._changed = asyncio.Event()
        slots = asyncio.Semaphore(self._runtime.cfg.max_workers)
        running = self._running
        # Not one cycle on a half-known set of policies: the older of two naming a workload sizes it.
        while not await asyncio.to_thread(self._runtime.watches.wait_claims_listed, 1.0):
            pass
        try:
            while not self._stopping:
                popped = self._schedule.pop_due(self._clock())
                if popped is None:
                    due = self._schedule.next_due()
                    timeout = None if due is None else max(0.0, due - self._clock())
                    self._changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), timeout)
                    continue
                await slots.acquire()
                uid, due = popped
                task = asyncio.create_task(self._cycle(uid, due, slots))
                running.add(task)
                task.add_done_callback(running.discard)
        finally:
            for task in running:
                task.cancel()

    async def _cycle(self, uid: str, due: float, slots: asyncio.Semaphore) -> None:
        started = self._clock()
        self._runtime.metrics.cycle_delay_seconds.observe(max(0.0, started - due))
        try:
            policy = self._policies.get(uid)
            if policy is not None and not self._stopping:
                await self._serve(uid, policy)
        except Exception:
            where = f"{policy.namespace}/{policy.name}" if policy is not None else uid
            log.exception("cycle failed", extra={"policy": where})
        finally:
            slots.release()
            self._schedule.finished(uid, started, self._clock())
            if self._changed is not None:
                self._changed.set()

    async def _serve(self, uid: str, policy: _Policy) -> None:
        """Take this policy's step (engine/handover.py): run its cycle, claim it first, or release it."""
        step = self._runtime.step(uid, policy.served_by)
        if step is Step.RELEASE:
            if await asyncio.to_thread(self._runtime.hand_over, policy.body, "") is not None:
                self._set_served(uid, False)
            return
        if step is Step.CLAIM:
            written = await asyncio.to_thread(
                self._runtime.hand_over, policy.body, self._runtime.cfg.identity
            )
            if written is None:
                return
            policy.replace(seen_policy(written))
        serves = step in (Step.SERVE, Step.CLAIM)
        self._set_served(uid, serves)
        if serves:
            await self._run_cycle(policy)

    def _set_served(self, uid: str, served: bool) -> None:
        released = not served and uid in self._served
        if served:
            self._served.add(uid)
        else:
            self._served.discard(uid)
        if (policy := self._policies.get(uid)) is not None:
            if released:
                # Its series are the new server's to export now: a stale one here (metrics unavailable,
                # desired replicas) would keep an alert firing or a dashboard wrong.
                self._runtime.metrics.forget_policy(policy.namespace, policy.name)
            policy.set_served(served)
        self._runtime.metrics.policies_served.set(len(self._served))

    async def _run_cycle(self, policy: _Policy) -> None:
        body, stamp = policy.body, policy.stamp  # a copy of its own: the cycle sets its resourceVersion
        generation = body["metadata"].get("generation")
        if policy.lookups is None or policy.lookups[0] != generation:
            policy.lookups = (generation, *lookups_of(body))
        claimants = self._runtime.watches.claimants(policy.lookups[1])
        watched = self._runtime.watches.snapshot(policy.lookups[2])
        memory = policy.memory
        assert memory is not None  # served since _serve's set_served(True), with nothing awaited between
        try:
            await asyncio.to_thread(self._runtime.cycle, body, memory, claimants, watched)
        finally:
            policy.wrote(stamp, body["metadata"].get("resourceVersion"))
