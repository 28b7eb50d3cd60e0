"""Two ScalingPolicies naming one workload: the older sizes it, the other says Conflict and writes nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from .conftest import Cluster
from .kube_helpers import (
    apply_policy,
    condition,
    deployment,
    events_for,
    policy_status,
    target,
    wait_condition,
)
from .operator_fixture import RunningOperator
from .test_operator_basics import load_query, prometheus_value, start_exporter
from .waiting import wait_deleted, wait_for

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

    # Nothing fights: the count stays the older policy's for many cycles of both.
    # (the generation moves with every spec write, a replica count put back included)
    generation = apps.read_namespaced_deployment("replica", namespace).metadata.generation
    for _ in range(10):
        assert _replicas(apps, namespace) == 3
        time.sleep(1)
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
