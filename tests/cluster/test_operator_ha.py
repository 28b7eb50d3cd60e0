"""Two operator replicas: exactly one acts; when it dies the other takes over; the template-made worker
Deployment is owned by the policy; the operator serves its own metrics, with one Prometheus request per
policy per cycle."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from .conftest import Cluster, release_policies
from .kube_helpers import GROUP, PLURAL, VERSION, apply_policy, replicas_of
from .operator_fixture import RunningOperator, delete_test_lease, local_operator, stop_local
from .waiting import CYCLES, metric_sum, wait_cycles, wait_deleted, wait_for

pytestmark = pytest.mark.cluster
LEASE = "ha-test-leader"


@pytest.fixture
def ha_namespace(cluster: Cluster) -> Iterator[str]:
    # Outside the session operator's t-*/demo-* namespaces, so only this test's replicas act here.
    name = f"ha-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": name, "labels": {"scalekeeper-test": "1"}}})
    try:
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background")


def decisions(op: RunningOperator) -> int:
    return op.logs().count('"message": "decision"')


def test_two_replicas_one_acts_and_the_other_takes_over(cluster: Cluster, ha_namespace: str) -> None:
    ns = ha_namespace
    from .operator_fixture import install_crd

    install_crd(cluster)
    common = {"SCALEKEEPER_LEASE_NAME": LEASE, "SCALEKEEPER_NAMESPACES": ns, "SCALEKEEPER_LEASE_SECONDS": "6"}
    ops = {ident: local_operator(cluster, ident, common) for ident in ("ha-a", "ha-b")}
    leases = client.CoordinationV1Api(cluster.api)
    try:
        leader = wait_for(
            "one replica to hold the lease",
            lambda: leases.read_namespaced_lease(LEASE, "scalekeeper-system").spec.holder_identity,
            timeout=60,
        )
        follower = next(i for i in ops if i != leader)
        template = {
            "metadata": {"labels": {"app": "video-worker"}},
            "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [
                    {
                        "name": "w",
                        "image": cluster.operator_image,
                        "command": ["python3", "-c", "import time; time.sleep(10**6)"],
                    }
                ],
            },
        }
        spec = {
            "intervalSeconds": 2,
            "workers": [
                {
                    "queue": "video",
                    "template": template,
                    "minReplicas": 2,
                    "maxReplicas": 3,
                    "tasksPerWorker": 5,
                    # A queue nobody exports: the metric is missing, so the count holds at minReplicas.
                    "metrics": {
                        "waiting": f'absent_series{{ns="{ns}"}}',
                        "inFlight": f'absent_series{{ns="{ns}"}}',
                    },
                }
            ],
        }
        policy = apply_policy(cluster, ns, "p", spec)
        apps = client.AppsV1Api(cluster.api)
        made = wait_for(
            "the worker Deployment made from the template",
            lambda: apps.read_namespaced_deployment("p-worker-video", ns),
            timeout=60,
        )
        assert made.metadata.owner_references[0].uid == policy["metadata"]["uid"]
        wait_for(
            "the worker Deployment at minReplicas 2", lambda: replicas_of(cluster, ns, "p-worker-video") == 2
        )

        # Only the leader decides: over cycles of the leader, the follower's log has no decision, and its
        # metrics count no cycle and no decision.
        wait_cycles(ops[leader], 2)
        assert decisions(ops[leader]) > 0
        assert decisions(ops[follower]) == 0
        followed = ops[follower].metrics_text()
        assert metric_sum(followed, "scalekeeper_decisions_total") == 0
        assert metric_sum(followed, CYCLES) == 0
        led = ops[leader].metrics_text()
        cycles, requests = metric_sum(led, CYCLES), metric_sum(led, "scalekeeper_prometheus_requests_total")
        # Each cycle asks Prometheus once for all of the policy's queries (one more: a cycle under way).
        assert cycles >= 2 and cycles <= requests <= cycles + 1, (cycles, requests)

        # The leader dies without releasing anything; the follower takes over within the lease duration.
        killed_at = time.monotonic()
        ops[leader].process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        wait_for(
            "the follower to take the lease",
            lambda: (
                leases.read_namespaced_lease(LEASE, "scalekeeper-system").spec.holder_identity == follower
            ),
            timeout=30,
        )
        takeover = time.monotonic() - killed_at
        assert takeover < 6 * 2 + 3, takeover  # lease duration plus one renew period, plus slack
        wait_for("the new leader to decide", lambda: decisions(ops[follower]) > 0, timeout=30)

        # And it keeps sizing: a change of minReplicas is applied by the new leader.
        spec["workers"][0]["minReplicas"] = 3  # type: ignore[index]
        apply_policy(cluster, ns, "p", spec)
        wait_for(
            "the new leader to scale to 3",
            lambda: replicas_of(cluster, ns, "p-worker-video") == 3,
            timeout=60,
        )

        # Deleting the policy removes the Deployment it made.
        client.CustomObjectsApi(cluster.api).delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "p")

        wait_deleted(
            "the template-made Deployment to be garbage-collected",
            lambda: apps.read_namespaced_deployment("p-worker-video", ns),
        )
    finally:
        release_policies(cluster, ns)
        for op in ops.values():
            stop_local(op)
        delete_test_lease(cluster, LEASE)
