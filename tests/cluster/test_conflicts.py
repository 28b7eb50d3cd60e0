"""Two ScalingPolicies naming one workload: the older sizes it, the other says Conflict and writes nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from scalekeeper.kube.hpa import HpaClient, HpaState
from scalekeeper.kube.targets import ReplicaClient, TargetRef, WriteConflict, transport_for

from .conftest import Cluster
from .kube_helpers import (
    apply_policy,
    condition,
    deployment,
    events_for,
    policy_status,
    replicas_of,
    target,
    wait_condition,
)
from .operator_fixture import RunningOperator
from .test_operator_basics import load_query, prometheus_value, start_exporter
from .waiting import wait_cycles, wait_deleted, wait_for

pytestmark = pytest.mark.cluster


def _replicas_spec(namespace: str, per_replica: int) -> dict[str, Any]:
    fast = {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 6, "periodSeconds": 15}]}
    return {
        "intervalSeconds": 2,
        "readReplicas": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "replica"},
            "minReplicas": 1,
            "maxReplicas": 6,
            "metric": {"query": load_query(namespace), "perReplica": per_replica},
            "behavior": {"scaleUp": fast, "scaleDown": fast},
        },
    }


def test_two_policies_on_one_workload_the_older_sizes_it_and_the_newer_reports_conflict(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(
        namespace, deployment("replica", 1, {"app": "replica"}, cluster.operator_image)
    )
    start_exporter(cluster, namespace, "250")
    wait_for(
        "Prometheus to see the load", lambda: prometheus_value(cluster, load_query(namespace)), timeout=120
    )

    # The older policy has the later name: age decides, not the alphabet.
    apply_policy(cluster, namespace, "zz-older", _replicas_spec(namespace, 100))  # 250/100 -> 3
    wait_for(
        "the older policy to size the workload to 3", lambda: _replicas(apps, namespace) == 3, timeout=60
    )
    time.sleep(1.1)  # creationTimestamp has one-second resolution
    apply_policy(cluster, namespace, "aa-newer", _replicas_spec(namespace, 50))  # would be 250/50 -> 5

    conflict = wait_condition(cluster, namespace, "aa-newer", "Conflict", "True", timeout=60)
    assert conflict["reason"] == "TargetSizedByOlderPolicy", conflict
    assert f"{namespace}/zz-older" in conflict["message"] and "Deployment" in conflict["message"], conflict
    ready = condition(policy_status(cluster, namespace, "aa-newer"), "Ready")
    assert ready is not None and ready["status"] == "False" and ready["reason"] == "Conflict", ready
    assert any(e.reason == "TargetSizedByOlderPolicy" for e in events_for(cluster, namespace, "aa-newer"))
    held = target(policy_status(cluster, namespace, "aa-newer"), "readReplicas")
    assert held is not None and held["limitedBy"] == "conflict", held
    older = condition(policy_status(cluster, namespace, "zz-older"), "Conflict")
    assert older is not None and older["status"] == "False", older

    # Nothing fights: the count stays the older policy's for several cycles of both.
    # (the generation moves with every spec write, a replica count put back included)
    generation = apps.read_namespaced_deployment("replica", namespace).metadata.generation
    wait_cycles(running_operator, 3, lambda: _replicas(apps, namespace) == 3, "the older policy's count of 3")
    assert apps.read_namespaced_deployment("replica", namespace).metadata.generation == generation
    assert not any(e.reason == "Scaled" for e in events_for(cluster, namespace, "aa-newer"))

    # The older policy goes: the newer one takes the workload over and the conflict clears.
    client.CustomObjectsApi(cluster.api).delete_namespaced_custom_object(
        "scalekeeper.dev", "v1alpha1", namespace, "scalingpolicies", "zz-older"
    )
    wait_deleted(
        "the older policy",
        lambda: client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
            "scalekeeper.dev", "v1alpha1", namespace, "scalingpolicies", "zz-older"
        ),
    )
    wait_for(
        "the newer policy to size the workload to 5", lambda: _replicas(apps, namespace) == 5, timeout=60
    )
    wait_for(
        "Conflict=False on the newer policy",
        lambda: (
            (condition(policy_status(cluster, namespace, "aa-newer"), "Conflict") or {}).get("status")
            == "False"
        ),
        timeout=30,
    )
    status = target(policy_status(cluster, namespace, "aa-newer"), "readReplicas")
    assert status is not None and status["desiredReplicas"] == 5, status


def _replicas(apps: client.AppsV1Api, namespace: str) -> int:
    return int(apps.read_namespaced_deployment_scale("replica", namespace).spec.replicas)


def test_a_write_from_a_stale_watch_lands_unless_the_count_changed(cluster: Cluster, namespace: str) -> None:
    """The replica write carries the resourceVersion the decision saw. The watches can be a little behind
    the API server; a status or metadata change since is not a reason to drop the write, a resize is."""
    apps = client.AppsV1Api(cluster.api)
    body = deployment("target", 1, {"app": "target"}, cluster.operator_image)
    apps.create_namespaced_deployment(namespace, body)
    replicas = ReplicaClient(transport_for(cluster.api))
    ref = TargetRef("apps/v1", "Deployment", "target", namespace)
    seen = replicas.read(ref)

    # Another party touches the object but not its size (a label here; a pod turning ready does the same).
    apps.patch_namespaced_deployment("target", namespace, {"metadata": {"labels": {"touched": "yes"}}})
    with pytest.raises(WriteConflict):
        replicas.write(ref, 2, seen.resource_version)  # the precondition holds: a stale version is refused
    after = replicas.write_unless_resized(ref, 2, seen)
    assert after.replicas == 2
    assert replicas_of(cluster, namespace, "target") == 2

    # Another writer resizes it: the write made on the old count is refused, and nothing is overwritten.
    seen = replicas.read(ref)
    apps.patch_namespaced_deployment_scale("target", namespace, {"spec": {"replicas": 4}})
    with pytest.raises(WriteConflict, match="resized to 4"):
        replicas.write_unless_resized(ref, 1, seen)
    assert replicas_of(cluster, namespace, "target") == 4


def test_an_hpa_update_from_a_stale_watch_lands_unless_its_spec_was_edited(
    cluster: Cluster, namespace: str
) -> None:
    hpas = client.AutoscalingV2Api(cluster.api)

    def hpa(min_replicas: int) -> dict[str, Any]:
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "p-web", "namespace": namespace},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": min_replicas,
                "maxReplicas": 5,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 80},
                        },
                    }
                ],
            },
        }

    writer = HpaClient(cluster.api)
    done, made = writer.apply(HpaState(None, None), hpa(1))
    assert done == "created" and made is not None
    # A label changes the version, as the HPA controller's status writes do: the floor still lands.
    hpas.patch_namespaced_horizontal_pod_autoscaler("p-web", namespace, {"metadata": {"labels": {"t": "1"}}})
    done, after = writer.apply(HpaState(made, None), hpa(2))
    assert done == "updated" and after is not None
    assert hpas.read_namespaced_horizontal_pod_autoscaler("p-web", namespace).spec.min_replicas == 2

    # Someone edits the spec: the write made on the old spec is refused and their edit stays.
    hpas.patch_namespaced_horizontal_pod_autoscaler("p-web", namespace, {"spec": {"maxReplicas": 7}})
    with pytest.raises(ApiException) as refused:
        writer.apply(HpaState(after, None), hpa(3))
    assert refused.value.status == 409
    kept = hpas.read_namespaced_horizontal_pod_autoscaler("p-web", namespace).spec
    assert (kept.min_replicas, kept.max_replicas) == (2, 7)
