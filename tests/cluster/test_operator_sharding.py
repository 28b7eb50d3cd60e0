"""Operator replicas as shards, on the real API server: each policy is served by the member the ring names
(status.servedBy), and each workload is written by one member at a time, read from its managedFields,
through a SIGKILL, a SIGSTOP past the Lease then SIGCONT, and a join; a workload two policies name is
sized by the older one's replica when they live on different replicas; a template-made worker Deployment
is owned by its policy and garbage-collected with it."""

from __future__ import annotations

import signal
from typing import Any

import pytest

from scalekeeper.engine.ring import HashRing

from .conftest import Cluster, release_policies
from .kube_helpers import GROUP, PLURAL, VERSION, apply_policy, condition, policy_status, replicas_of
from .operator_fixture import RunningOperator, delete_test_lease, install_crd, local_operator, stop_local
from .shard_helpers import LEASE_SECONDS, Fleet, Writers, policy_spec
from .waiting import CYCLES, metric_sum, wait_cycles, wait_deleted, wait_for

pytestmark = pytest.mark.cluster
TARGETS = 8


def test_replicas_share_the_policies_and_each_target_has_one_writer_at_a_time(
    cluster: Cluster, unserved_namespace: str
) -> None:
    ns = unserved_namespace
    install_crd(cluster)
    group = f"lease-{ns}"
    env = {
        "SCALEKEEPER_LEASE_NAME": group,
        "SCALEKEEPER_NAMESPACES": ns,
        "SCALEKEEPER_LEASE_SECONDS": str(LEASE_SECONDS),
        "SCALEKEEPER_API_TIMEOUT_SECONDS": "2",
    }
    ops: dict[str, RunningOperator] = {}
    fleet = Fleet(cluster, ns, TARGETS)
    writers = Writers(cluster, ns)

    def start(member: str) -> None:
        ops[member] = local_operator(cluster, member, env)

    try:
        members = {f"{ns}-{m}" for m in "abc"}
        for m in sorted(members):
            start(m)
        apps = fleet.apps
        targets = [f"db{i}" for i in range(TARGETS)]
        fleet.create_targets(targets)
        fleet.set_load(0.5)
        wait_for("every policy served by its ring owner", lambda: fleet.settled(members), timeout=90)
        wait_for("every target at 2", lambda: fleet.sizes() == {2}, timeout=60)

        # Right after it has written (2 -> 4), SIGKILL the member serving the most; the load changes at
        # once: its targets are written again (4 -> 5) only by their new owners, after its Lease expired.
        fleet.set_load(0.25)
        wait_for("every target at 4", lambda: fleet.sizes() == {4}, timeout=60)
        killed = fleet.busiest(members)
        ops[killed].process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        members.discard(killed)
        fleet.set_load(0.2)
        wait_for("the killed member's policies taken over", lambda: fleet.settled(members), timeout=60)
        wait_for("every target at 5", lambda: fleet.sizes() == {5}, timeout=60)

        # Right after its writes, SIGSTOP one past its Lease: its policies move; the load changes (5 -> 6);
        # SIGCONT: it rejoins, its stale cycles write nothing (no target leaves 6), and it gets back what
        # the ring gives it.
        stopped = fleet.busiest(members)
        ops[stopped].process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
        wait_for(
            "the stopped member's policies taken over", lambda: fleet.settled(members - {stopped}), timeout=60
        )
        fleet.set_load(0.17)
        wait_for("every target at 6", lambda: fleet.sizes() == {6}, timeout=60)
        # The writes to 6 are counted from the watch, which can lag the list: count from after them.
        wait_for(
            "the watch to see every target at 6", lambda: writers.replicas_seen(targets) == {6}, timeout=30
        )
        since = len(writers.writes)
        ops[stopped].process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
        wait_for("the resumed member serving again", lambda: fleet.settled(members), timeout=60)
        wait_cycles(ops[stopped], 2)
        assert writers.writes[since:] == []
        # The writes the test caused, each by a member (the check below is about them).
        assert {w[2] for w in writers.by()} == {2, 4, 5, 6}, writers.writes

        # A join takes what the new ring gives it, with nothing written twice.
        joined = f"{ns}-d"
        start(joined)
        members.add(joined)
        wait_for("the joined member serving its share", lambda: fleet.settled(members), timeout=60)

        # Two policies on one workload, served by different replicas: the older one sizes it.
        fleet.create_targets(["shared"])
        # Created within a second they tie on creationTimestamp: the name breaks the tie (test_conflicts).
        older = apply_policy(cluster, ns, "aa-older", policy_spec("shared", 0.5))
        ring = HashRing(members)
        newer = next(
            p
            for p in (
                apply_policy(cluster, ns, f"zz-newer-{n}", policy_spec("shared", 0.25)) for n in range(8)
            )
            if ring.owner(p["metadata"]["uid"]) != ring.owner(older["metadata"]["uid"])
        )
        name = newer["metadata"]["name"]
        wait_for(
            "the newer policy's Conflict condition",
            lambda: (condition(policy_status(cluster, ns, name), "Conflict") or {}).get("status") == "True",
            timeout=60,
        )
        wait_for("the shared workload at 2, the older's", lambda: replicas_of(cluster, ns, "shared") == 2)
        owner_of_older = f"scalekeeper-{ring.owner(older['metadata']['uid'])}"
        managers = {f.manager for f in apps.read_namespaced_deployment("shared", ns).metadata.managed_fields}
        assert {m for m in managers if m.startswith("scalekeeper-")} == {owner_of_older}

        # No target ever had two members' writes within a Lease duration of each other.
        assert writers.overlaps(LEASE_SECONDS, {**fleet.policy_of(), "shared": "aa-older"}) == []
        # And each member asked Prometheus at most once per cycle.
        for member in members:
            text = ops[member].metrics_text()
            cycles = metric_sum(text, CYCLES)
            assert metric_sum(text, "scalekeeper_prometheus_requests_total") <= cycles + 1

        # A template-made worker Deployment is owned by its policy and goes with it.
        worker = apply_policy(cluster, ns, "w", _worker_spec(ns, cluster.operator_image))
        made = wait_for(
            "the worker Deployment made from the template",
            lambda: apps.read_namespaced_deployment("w-worker-video", ns),
            timeout=60,
        )
        assert made.metadata.owner_references[0].uid == worker["metadata"]["uid"]
        fleet.objects.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "w")
        wait_deleted(
            "the template-made Deployment to be garbage-collected",
            lambda: apps.read_namespaced_deployment("w-worker-video", ns),
        )
    finally:
        writers.stop()
        for op in ops.values():
            if op.process is not None and op.process.poll() is None:
                op.process.send_signal(signal.SIGCONT)
        release_policies(cluster, ns)
        for op in ops.values():
            stop_local(op)
        delete_test_lease(cluster, group)


def _worker_spec(ns: str, image: str) -> dict[str, Any]:
    return {
        "intervalSeconds": 2,
        "workers": [
            {
                "queue": "video",
                "template": {
                    "metadata": {"labels": {"app": "video-worker"}},
                    "spec": {
                        "nodeSelector": {"scalekeeper-test": "no-such-node"},
                        "containers": [{"name": "w", "image": image, "command": ["sleep", "1000000"]}],
                    },
                },
                "minReplicas": 1,
                "maxReplicas": 2,
                "tasksPerWorker": 5,
                # A queue nobody exports: the count holds at minReplicas.
                "metrics": {
                    "waiting": f'absent_series{{ns="{ns}"}}',
                    "inFlight": f'absent_series{{ns="{ns}"}}',
                },
            }
        ],
    }
