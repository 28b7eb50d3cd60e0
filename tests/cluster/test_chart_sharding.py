"""The chart with `replicas` above 1, on the real cluster: its pods share the policies (each served by the
pod the ring of the live pods names), and each workload has one writer at a time, read from its
managedFields, through a pod deleted (and its replacement joining) and `helm upgrade`s from 3 replicas to 4
and to 2. A SIGKILL or SIGSTOP past the Lease is in test_operator_sharding, where the test holds the
processes."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client

from .conftest import ROOT, Cluster
from .operator_fixture import install_crd, release_options
from .shard_helpers import LEASE_SECONDS, Fleet, Writers
from .test_chart_lifecycle import helm
from .waiting import wait_for

pytestmark = pytest.mark.cluster
CHART = ROOT / "manifests" / "chart" / "scalekeeper"
TARGETS = 6


def test_the_charts_replicas_share_the_policies_through_a_deletion_and_upgrades(
    cluster: Cluster, unserved_namespace: str
) -> None:
    ns = unserved_namespace
    install_crd(cluster)
    release = f"sk-{uuid.uuid4().hex[:6]}"
    values = [
        *release_options(cluster, ns),
        "--set",
        f"watchNamespaces={{{ns}}}",
        "--set",
        f"sharding.leaseName={release}",
        "--set",
        f"sharding.leaseSeconds={LEASE_SECONDS}",
        "--set",
        "apiTimeoutSeconds=2",
        # Nothing cluster-scoped, so nothing outlives the namespace.
        "--set",
        "podDeletionCostPolicy.enabled=false",
    ]
    core = client.CoreV1Api(cluster.api)
    fleet = Fleet(cluster, ns, TARGETS)
    writers = Writers(cluster, ns)

    def pods() -> set[str]:
        """The release's running pods, not those on their way out: the live members."""
        listed = core.list_namespaced_pod(ns, label_selector=f"app.kubernetes.io/instance={release}").items
        return {
            p.metadata.name
            for p in listed
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp
        }

    def serves_by_pods(count: int) -> bool:
        members = pods()
        return len(members) == count and fleet.settled(members)

    try:
        helm(cluster, "install", release, str(CHART), "--set", "replicas=3", *values)
        fleet.create_targets([f"db{i}" for i in range(TARGETS)])
        fleet.set_load(0.5)
        wait_for("each policy served by its pod on the ring of 3", lambda: serves_by_pods(3), timeout=120)
        wait_for("every target at 2", lambda: fleet.sizes() == {2}, timeout=60)

        # Right after it has written (2 -> 4), a pod is deleted: on SIGTERM it releases its policies, which
        # their new owners claim at once; a replacement with a new name joins.
        fleet.set_load(0.25)
        wait_for("every target at 4", lambda: fleet.sizes() == {4}, timeout=60)
        gone = fleet.busiest(pods())
        core.delete_namespaced_pod(gone, ns, grace_period_seconds=0)
        fleet.set_load(0.2)
        wait_for("the policies served by the pods after the deletion", lambda: serves_by_pods(3), timeout=120)
        assert gone not in pods()
        wait_for("every target at 5", lambda: fleet.sizes() == {5}, timeout=60)

        helm(cluster, "upgrade", release, str(CHART), "--set", "replicas=4", *values)
        wait_for("each policy served on the ring of 4", lambda: serves_by_pods(4), timeout=120)
        helm(cluster, "upgrade", release, str(CHART), "--set", "replicas=2", *values)
        wait_for("each policy served on the ring of 2", lambda: serves_by_pods(2), timeout=120)
        fleet.set_load(0.17)
        wait_for("every target at 6", lambda: fleet.sizes() == {6}, timeout=60)

        assert writers.overlaps(LEASE_SECONDS, fleet.policy_of()) == []
        written = writers.by()
        assert {w[2] for w in written} == {2, 4, 5, 6}, writers.writes
        assert all(w[3].removeprefix("scalekeeper-").startswith(release) for w in written), written
    finally:
        writers.stop()
        helm(cluster, "uninstall", release, "--namespace", ns, "--wait", check=False)
