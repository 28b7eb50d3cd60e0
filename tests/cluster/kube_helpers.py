"""Small readers and writers the end-to-end tests share."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import Cluster
from .waiting import wait_for

GROUP, VERSION, PLURAL = "scalekeeper.dev", "v1alpha1", "scalingpolicies"


def apply_policy(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    objects = client.CustomObjectsApi(cluster.api)
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScalingPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }
    # The operator writes the status between our read and our replace now and then (at each claim and
    # release too, with several replicas): read again and replace at the newer version.
    for attempt in range(5):
        try:
            current = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status != 404:
                raise
            result: dict[str, Any] = objects.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body
            )
            return result
        body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            replaced: dict[str, Any] = objects.replace_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body
            )
            return replaced
        except ApiException as exc:
            if exc.status != 409 or attempt == 4:
                raise
    raise AssertionError("unreachable")


def policy_status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    obj = client.CustomObjectsApi(cluster.api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    status: dict[str, Any] = obj.get("status") or {}
    return status


def condition(status: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions", []) if c["type"] == type_), None)


def wait_condition(
    cluster: Cluster, namespace: str, policy: str, type_: str, status: str, timeout: float = 120.0
) -> dict[str, Any]:
    """Wait until the policy's condition `type_` has `status`; returns the condition."""

    def reached() -> dict[str, Any] | None:
        found = condition(policy_status(cluster, namespace, policy), type_)
        return found if found is not None and found["status"] == status else None

    return wait_for(f"{namespace}/{policy} {type_}={status}", reached, timeout=timeout)


def wait_decision(
    cluster: Cluster, namespace: str, policy: str, target_name: str, desired: int, timeout: float = 60.0
) -> dict[str, Any]:
    """Wait until the policy's status reports `desired` replicas for a target; returns the target's status.
    The status is written after the scale (observe, decide, act, report): a test that saw the scale waits
    here for the cycle's report."""

    def reached() -> dict[str, Any] | None:
        found = target(policy_status(cluster, namespace, policy), target_name)
        return found if found is not None and found.get("desiredReplicas") == desired else None

    return wait_for(f"{namespace}/{policy} {target_name} decided at {desired}", reached, timeout=timeout)


def target(status: dict[str, Any], name: str) -> dict[str, Any] | None:
    return next((t for t in status.get("targets", []) if t["name"] == name), None)


def events_for(cluster: Cluster, namespace: str, name: str) -> list[client.CoreV1Event]:
    items = client.CoreV1Api(cluster.api).list_namespaced_event(namespace).items
    return [e for e in items if e.involved_object.kind == "ScalingPolicy" and e.involved_object.name == name]


def deployment(
    name: str,
    replicas: int,
    labels: dict[str, str],
    image: str,
    command: list[str] | None = None,
    cpu_request: str = "50m",
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            "command": command or ["python3", "-c", "import time; time.sleep(10**6)"],
                            "resources": {"requests": {"cpu": cpu_request}},
                        }
                    ],
                },
            },
        },
    }


def replicas_of(cluster: Cluster, namespace: str, name: str) -> int:
    scale = client.AppsV1Api(cluster.api).read_namespaced_deployment_scale(name, namespace)
    return int(scale.spec.replicas or 0)
