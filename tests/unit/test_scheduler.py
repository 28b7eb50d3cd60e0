"""The scheduler loop around the timetable (a recording cycle, no API); the timetable itself is
test_schedule_timetable.py's."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import threading
import zlib
from dataclasses import dataclass, field
from typing import Any

from scalekeeper.config import OperatorConfig
from scalekeeper.engine.handover import Step
from scalekeeper.engine.ring import HashRing
from scalekeeper.model.base import LEGACY_FINALIZER
from scalekeeper.opmetrics import OperatorMetrics
from scalekeeper.scheduler import PolicyScheduler, compact_body, seen_policy


def test_the_compact_body_keeps_what_a_cycle_reads_and_drops_managed_fields() -> None:
    identity = {
        "name": "shop",
        "namespace": "prod",
        "uid": "u-1",
        "generation": 3,
        "creationTimestamp": "2026-11-26T10:00:00Z",
        # The status is written at this version: a replica that lost the policy cannot overwrite it.
        "resourceVersion": "77",
    }
    spec, status = {"intervalSeconds": 5}, {"observedGeneration": 3}
    body = {
        "apiVersion": "scalekeeper.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {
            **identity,
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
        },
        "spec": spec,
        "status": status,
    }
    assert compact_body(body) == {"metadata": identity, "spec": spec, "status": status}


def test_a_seen_policy_carries_what_the_scheduler_reads_at_once_and_the_compact_body_packed() -> None:
    body = {
        "metadata": {
            "name": "shop",
            "namespace": "prod",
            "uid": "u-1",
            "generation": 4,
            "deletionTimestamp": "2026-12-07T00:00:00Z",
            "finalizers": ["other.dev/keep", LEGACY_FINALIZER],
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"intervalSeconds": 5},
        "status": {"servedBy": "replica-2"},
    }
    seen = seen_policy(body)
    assert (seen.uid, seen.namespace, seen.name, seen.generation, seen.served_by) == (
        "u-1",
        "prod",
        "shop",
        4,
        "replica-2",
    )
    assert seen.deleting and seen.legacy_finalizer
    assert json.loads(zlib.decompress(seen.packed)) == compact_body(body)
    fresh = seen_policy({"metadata": {"name": "new", "namespace": "prod", "uid": "u-2"}, "spec": {}})
    assert (fresh.served_by, fresh.deleting, fresh.legacy_finalizer) == ("", False, False)


@dataclass
class RecordingRuntime:
    """The scheduler's side of the runtime: config, leadership, watches, and a cycle that records."""

    cfg: OperatorConfig = field(default_factory=lambda: OperatorConfig(max_workers=2))
    cycles: list[tuple[str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    class _Watches:
        def __init__(self) -> None:
            self.claims_listed = threading.Event()
            self.claims_listed.set()

        def snapshot(self, keys: list[str]) -> Any:
            return None

        def wait_claims_listed(self, timeout: float) -> bool:
            return self.claims_listed.wait(timeout)

        def claimants(self, keys: list[str]) -> dict[str, list[Any]]:
            return {}

    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    watches: Any = field(default_factory=lambda: RecordingRuntime._Watches())

    def first_cycle_delay(self, uid: str, interval: float) -> float:
        return 0.0

    def step(self, uid: str, served_by: str) -> Step:
        return Step.SERVE

    def cycle(self, body: dict[str, Any], memory: Any, claimants: Any, watched: Any) -> None:
        meta = body["metadata"]
        with self.lock:
            self.cycles.append((meta["name"], meta["generation"]))
        self.metrics.decision(meta["namespace"], meta["name"], "readReplicas", "none", 1, 1)

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, labels)


def policy(name: str, generation: int = 1, interval: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": generation},
        "spec": {
            "intervalSeconds": interval,
            "readReplicas": {
                "target": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db"},
                "maxReplicas": 1,
                "metric": {"query": "load", "perReplica": 1.0},
            },
        },
    }


def test_no_cycle_runs_before_every_policys_claims_are_listed() -> None:
    runtime = RecordingRuntime()
    runtime.watches.claims_listed.clear()

    async def scenario() -> None:
        scheduler = PolicyScheduler(runtime)  # type: ignore[arg-type]
        task = asyncio.create_task(scheduler.run())
        scheduler.observe(seen_policy(policy("a", interval=60)))
        await asyncio.sleep(0.3)
        assert runtime.cycles == []  # due, but which other policies name its workloads is not known yet
        runtime.watches.claims_listed.set()
        for _ in range(50):
            if runtime.cycles:
                break
            await asyncio.sleep(0.05)
        assert runtime.cycles == [("a", 1)]
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_the_loop_runs_watched_policies_wakes_on_a_new_generation_and_forgets_deleted_ones() -> None:
    runtime = RecordingRuntime()

    async def scenario() -> None:
        scheduler = PolicyScheduler(runtime)  # type: ignore[arg-type]
        task = asyncio.create_task(scheduler.run())
        scheduler.observe(seen_policy(policy("a", interval=60)))
        scheduler.observe(seen_policy(policy("b", interval=60)))
        await asyncio.sleep(0.3)
        assert sorted(runtime.cycles) == [("a", 1), ("b", 1)]  # each at once, then not for 60 s
        assert runtime.sample("scalekeeper_policies") == 2
        scheduler.observe(seen_policy(policy("a", generation=2, interval=60)))  # a spec change
        await asyncio.sleep(0.3)
        assert runtime.cycles.count(("a", 2)) == 1
        scheduler.observe(seen_policy(policy("b", interval=60)))  # a status write: same generation
        scheduler.forget("uid-a", "ns", "a")
        await asyncio.sleep(0.3)
        assert len(runtime.cycles) == 3 and runtime.sample("scalekeeper_policies") == 1
        # the deleted policy's series went with it, the other's stay
        a, b = ({"namespace": "ns", "policy": p, "target": "readReplicas"} for p in "ab")
        assert runtime.sample("scalekeeper_desired_replicas", **a) is None
        assert runtime.sample("scalekeeper_current_replicas", **a) is None
        assert runtime.sample("scalekeeper_desired_replicas", **b) == 1
        task.cancel()

    asyncio.run(scenario())


def test_a_cycle_that_waits_for_a_free_worker_is_counted_late_by_its_wait() -> None:
    runtime = RecordingRuntime(cfg=OperatorConfig(max_workers=1))
    now = [0.0]
    release = threading.Event()
    record = runtime.cycle

    def cycle(body: dict[str, Any], memory: Any, claimants: Any, watched: Any) -> None:
        record(body, memory, claimants, watched)
        if body["metadata"]["name"] == "a":
            release.wait(10)

    runtime.cycle = cycle  # type: ignore[method-assign]

    async def scenario() -> None:
        scheduler = PolicyScheduler(runtime, clock=lambda: now[0])  # type: ignore[arg-type]
        scheduler.observe(seen_policy(policy("a", interval=60)))
        scheduler.observe(seen_policy(policy("b", interval=60)))
        task = asyncio.create_task(scheduler.run())
        await until(lambda: runtime.cycles == [("a", 1)])
        now[0] = 7.0  # b, due at 0, waits for the one worker that long
        release.set()
        await until(lambda: len(runtime.cycles) == 2)
        task.cancel()

    asyncio.run(scenario())
    assert runtime.sample("scalekeeper_cycle_delay_seconds_count") == 2
    assert runtime.sample("scalekeeper_cycle_delay_seconds_sum") == 7.0
    assert runtime.sample("scalekeeper_cycle_delay_seconds_bucket", le="5.0") == 1
    assert runtime.sample("scalekeeper_cycle_delay_seconds_bucket", le="10.0") == 2


@dataclass
class ShardRuntime(RecordingRuntime):
    """A replica "me" whose ring owner per policy the test sets; its handovers are recorded and answered
    as the API server would (the policy written back, with its new servedBy)."""

    owner: dict[str, str] = field(default_factory=dict)
    handovers: list[tuple[str, str]] = field(default_factory=list)
    handed_bodies: list[dict[str, Any]] = field(default_factory=list)
    expired: set[str] = field(default_factory=set)
    cfg: OperatorConfig = field(default_factory=lambda: OperatorConfig(max_workers=2, identity="me"))

    def step(self, uid: str, served_by: str) -> Step:
        from scalekeeper.engine.handover import next_step

        return next_step("me", self.owner.get(uid), served_by, True, served_by in self.expired)

    def hand_over(self, body: dict[str, Any], served_by: str) -> dict[str, Any]:
        with self.lock:
            self.handovers.append((body["metadata"]["name"], served_by))
            self.handed_bodies.append(copy.deepcopy(body))
        return {**body, "status": {**body["status"], "servedBy": served_by}}


def served(name: str, by: str, interval: int = 60) -> dict[str, Any]:
    body = policy(name, interval=interval)
    body["status"] = {"servedBy": by} if by else {}
    return body


async def until(condition: Any) -> None:
    """Yield to the scheduler until `condition()` holds (the test's timeout ends a hang)."""
    while not condition():
        await asyncio.sleep(0.01)


def test_a_replica_claims_what_the_ring_gives_it_releases_the_rest_and_waits_on_a_live_server() -> None:
    runtime = ShardRuntime(owner={"uid-free": "me", "uid-mine": "me", "uid-moved": "b", "uid-busy": "me"})

    async def scenario() -> None:
        scheduler = PolicyScheduler(runtime)  # type: ignore[arg-type]
        task = asyncio.create_task(scheduler.run())
        scheduler.observe(seen_policy(served("free", "")))
        scheduler.observe(seen_policy(served("mine", "me")))
        scheduler.observe(seen_policy(served("moved", "me")))
        scheduler.observe(seen_policy(served("busy", "old")))  # its server "old" is alive
        scheduler.observe(seen_policy(served("other", "b")))  # not on my ring
        await asyncio.wait_for(until(lambda: len(runtime.cycles) == 2 and len(runtime.handovers) == 2), 5)
        assert sorted(runtime.handovers) == [("free", "me"), ("moved", "")]
        assert sorted(runtime.cycles) == [("free", 1), ("mine", 1)]
        assert runtime.sample("scalekeeper_policies_served") == 2
        # "old" expires: at the next due time of "busy" (woken here by a status change) it is claimed.
        runtime.expired.add("old")
        scheduler.observe(seen_policy(served("busy", "older")))
        runtime.expired.add("older")
        await asyncio.wait_for(until(lambda: ("busy", "me") in runtime.handovers), 5)
        await asyncio.wait_for(until(lambda: ("busy", 1) in runtime.cycles), 5)
        task.cancel()

    asyncio.run(scenario())


def test_a_ring_change_makes_the_moved_policies_due_at_once_and_a_drain_releases_what_is_served() -> None:
    runtime = ShardRuntime(owner={"uid-a": "me", "uid-b": "me"})

    async def scenario() -> None:
        scheduler = PolicyScheduler(runtime)  # type: ignore[arg-type]
        task = asyncio.create_task(scheduler.run())
        scheduler.observe(seen_policy(served("a", "me")))
        scheduler.observe(seen_policy(served("b", "me")))
        await asyncio.wait_for(until(lambda: len(runtime.cycles) == 2), 5)
        # "f" joins and the ring gives it b: b is released at once, not 60 s later; a is not touched.
        joined = HashRing(["me", "f"])
        runtime.owner = {uid: str(joined.owner(uid)) for uid in runtime.owner}
        assert runtime.owner == {"uid-a": "me", "uid-b": "f"}
        scheduler.ring_changed(HashRing(["me"]), joined)
        await asyncio.wait_for(until(lambda: ("b", "") in runtime.handovers), 5)
        assert runtime.cycles.count(("a", 1)) == 1
        # b's series went with it (its new server exports them), a's stay
        a_series, b_series = ({"namespace": "ns", "policy": p, "target": "readReplicas"} for p in "ab")
        assert runtime.sample("scalekeeper_desired_replicas", **b_series) is None
        assert runtime.sample("scalekeeper_desired_replicas", **a_series) == 1
        assert runtime.sample("scalekeeper_ring_changes_total") == 1
        await scheduler.drain(timeout=5)
        assert sorted(runtime.handovers) == [("a", ""), ("b", "")]
        await asyncio.wait_for(task, 5)  # the loop ends once drained

    asyncio.run(scenario())


def test_a_packed_policy_keeps_its_whole_body_and_a_cycles_written_version_reaches_the_next() -> None:
    """Every policy is kept packed: a handover or a cycle gets the whole compact body, each cycle a copy of
    its own, and the resourceVersion a cycle's status write left is the one the next cycle writes at,
    until the watch brings a body."""
    runtime = ShardRuntime(owner={"uid-mine": "me", "uid-other": "b"})
    bodies: list[dict[str, Any]] = []
    versions_seen: list[Any] = []

    def cycle(body: dict[str, Any], memory: Any, claimants: Any, watched: Any) -> None:
        versions_seen.append(body["metadata"].get("resourceVersion"))
        bodies.append(body)
        body["metadata"]["resourceVersion"] = str(len(bodies))

    runtime.cycle = cycle  # type: ignore[method-assign]
    other = served("other", "b")
    other["status"]["targets"] = [{"name": "readReplicas", "desiredReplicas": 3, "reason": "load 3 / 1"}]

    async def scenario() -> None:
        scheduler = PolicyScheduler(runtime)  # type: ignore[arg-type]
        task = asyncio.create_task(scheduler.run())
        scheduler.observe(seen_policy(served("mine", "me", interval=1)))
        scheduler.observe(seen_policy(other))
        await asyncio.wait_for(until(lambda: len(bodies) == 2), 5)
        assert bodies[0] is not bodies[1] and versions_seen == [None, "1"]
        assert bodies[1]["spec"] == served("mine", "me", interval=1)["spec"]
        # The watch brings the policy (its status written elsewhere, say): its version is the one now.
        rewritten = served("mine", "me", interval=1)
        rewritten["metadata"]["resourceVersion"] = "40"
        scheduler.observe(seen_policy(rewritten))
        await asyncio.wait_for(until(lambda: len(bodies) == 3), 5)
        assert versions_seen[-1] == "40"
        # The ring gives "other" to me and b has released it: claimed with its whole body.
        runtime.owner["uid-other"] = "me"
        released = copy.deepcopy(other)
        released["status"]["servedBy"] = ""
        scheduler.observe(seen_policy(released))
        await asyncio.wait_for(until(lambda: ("other", "me") in runtime.handovers), 5)
        assert runtime.handed_bodies[-1] == compact_body(released)
        task.cancel()

    asyncio.run(scenario())


def test_only_a_served_policy_keeps_a_memory_and_a_release_drops_it() -> None:
    """Another replica's policy keeps no memory (its parsed spec alone is about 50 KB): only its packed
    body and its interval, which still follows its spec. A policy handed over drops the memory it had."""
    runtime = ShardRuntime(owner={"uid-a": "me", "uid-b": "b"})
    memories: list[Any] = []

    def cycle(body: dict[str, Any], memory: Any, claimants: Any, watched: Any) -> None:
        memories.append(memory)

    runtime.cycle = cycle  # type: ignore[method-assign]

    async def scenario() -> None:
        scheduler = PolicyScheduler(runtime)  # type: ignore[arg-type]
        task = asyncio.create_task(scheduler.run())
        scheduler.observe(seen_policy(served("a", "me")))
        scheduler.observe(seen_policy(served("b", "b")))
        await asyncio.wait_for(until(lambda: len(memories) == 1), 5)
        kept = scheduler._policies
        assert kept["uid-a"].memory is memories[0] is not None
        assert kept["uid-b"].memory is None
        respecified = served("b", "b", interval=30)
        respecified["metadata"]["generation"] = 2
        scheduler.observe(seen_policy(respecified))
        assert kept["uid-b"].interval() == 30.0 and kept["uid-b"].memory is None
        runtime.owner["uid-a"] = "d"  # the ring gives it to another; a spec change makes it due now
        moved = served("a", "me")
        moved["metadata"]["generation"] = 2
        scheduler.observe(seen_policy(moved))
        await asyncio.wait_for(until(lambda: ("a", "") in runtime.handovers), 5)
        assert kept["uid-a"].memory is None
        task.cancel()

    asyncio.run(scenario())


@dataclass
class FinalizingRuntime(RecordingRuntime):
    """Records the finalizer removals; each blocks until the test lets it end."""

    dropped: list[tuple[str, str, str]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def drop_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        self.dropped.append((namespace, name, finalizer))
        self.release.wait(5)


def test_informer_bodies_reach_the_loop_in_order_and_a_relist_forgets_the_unlisted() -> None:
    runtime = RecordingRuntime()

    async def scenario() -> None:
        scheduler = PolicyScheduler(runtime)  # type: ignore[arg-type]
        other = policy("c")
        other["metadata"]["namespace"] = "elsewhere"
        informer_side = [
            lambda: scheduler.seen({**policy("a"), "kind": "ScalingPolicy"}),
            lambda: scheduler.seen(policy("b")),
            lambda: scheduler.seen(other),
            lambda: scheduler.seen(policy("b", generation=2)),
            lambda: scheduler.gone(policy("a")),
        ]
        handed: list[tuple[Any, ...]] = []
        loop = asyncio.get_running_loop()
        real = loop.call_soon_threadsafe

        def record(callback: Any, *args: Any) -> Any:
            handed.append(args)
            return real(callback, *args)

        loop.call_soon_threadsafe = record  # type: ignore[method-assign]
        thread = threading.Thread(target=lambda: [call() for call in informer_side])
        thread.start()
        thread.join()
        loop.call_soon_threadsafe = real  # type: ignore[method-assign]
        # Packed on the informer's thread: no dict of a body waits in the loop's queue (see SeenPolicy).
        assert not [arg for args in handed for arg in args if isinstance(arg, dict)]
        await asyncio.sleep(0)  # the loop runs what the thread handed it
        assert {p.body["metadata"]["name"]: p.generation for p in scheduler._policies.values()} == {
            "b": 2,
            "c": 1,
        }
        assert runtime.sample("scalekeeper_policies") == 2
        # A relist of namespace "ns" brought nothing: "b" was deleted unseen; "c" is another list's.
        scheduler.listed(set(), "ns".__eq__)
        await asyncio.sleep(0)
        assert [p.body["metadata"]["name"] for p in scheduler._policies.values()] == ["c"]
        scheduler.listed({"uid-c"}, lambda _: True)
        await asyncio.sleep(0)
        assert runtime.sample("scalekeeper_policies") == 1

    asyncio.run(scenario())


def test_an_earlier_builds_finalizer_is_removed_once_at_a_time_and_a_deleting_policy_runs_no_cycle() -> None:
    runtime = FinalizingRuntime()

    async def scenario() -> None:
        scheduler = PolicyScheduler(runtime)  # type: ignore[arg-type]
        old = policy("old")
        old["metadata"]["finalizers"] = ["other.example/keep", "scalekeeper.dev/daemon"]
        scheduler.observe(seen_policy(old))
        scheduler.observe(
            seen_policy(old)
        )  # a status write while the removal is under way: not a second removal
        for _ in range(100):
            if runtime.dropped:
                break
            await asyncio.sleep(0.01)
        assert runtime.dropped == [("ns", "old", "scalekeeper.dev/daemon")]
        # Deleted while it still carries the finalizer: removed again, and no longer scheduled.
        runtime.release.set()
        while scheduler._unfinalizing:
            await asyncio.sleep(0.01)
        old["metadata"]["deletionTimestamp"] = "2026-12-06T18:00:00Z"
        scheduler.observe(seen_policy(old))
        task = asyncio.create_task(scheduler.run())
        while len(runtime.dropped) < 2:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert runtime.cycles == [] and runtime.sample("scalekeeper_policies") == 0
        scheduler.observe(seen_policy(policy("fresh")))
        while not runtime.cycles:
            await asyncio.sleep(0.01)
        assert len(runtime.dropped) == 2  # a policy without it is left as it is
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
