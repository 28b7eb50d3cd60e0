"""Worker Deployments the operator makes from a policy's pod template, one per queue.

Only the template is reconciled here; replicas are the engine's, written through /scale like any target,
so creating the Deployment never fights a scale decision.
"""

from __future__ import annotations

import copy
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from ..model import WorkerSpec
from .hpa import MANAGED_BY
from .names import label_value
from .owners import OwnerRef, is_owned_by


def desired_worker_deployment(worker: WorkerSpec, policy: OwnerRef, replicas: int) -> dict[str, Any]:
    assert worker.template is not None
    name = worker.deployment_name(policy.name)
    selector = {
        "scalekeeper.dev/policy": label_value(policy.name),
        "scalekeeper.dev/queue-deployment": label_value(name),
    }
    template = copy.deepcopy(worker.template)
    metadata = template.setdefault("metadata", {})
    metadata.setdefault("labels", {}).update(selector)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": policy.namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, **selector},
            "annotations": {"scalekeeper.dev/queue": worker.queue},
            "ownerReferences": [policy.reference()],
        },
        "spec": {"replicas": replicas, "selector": {"matchLabels": selector}, "template": template},
    }


class WorkerDeployments:
    def __init__(self, api: client.ApiClient, apps: Any = None) -> None:
        # `apps`: the AppsV1Api to call (a fake API server's in unit tests).
        self._apps = apps or client.AppsV1Api(api)
        self._raw = api

    def ensure(self, worker: WorkerSpec, policy: OwnerRef, initial_replicas: int) -> str:
        """Create the queue's Deployment or bring its template in line; replicas are left alone."""
        desired = desired_worker_deployment(worker, policy, initial_replicas)
        name = desired["metadata"]["name"]
        try:
            current = self._raw.sanitize_for_serialization(
                self._apps.read_namespaced_deployment(name, policy.namespace)
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            self._apps.create_namespaced_deployment(policy.namespace, desired)
            return "created"
        if not is_owned_by(current, policy):
            return "foreign"
        # Compare what we set, not what the API server defaulted into the template.
        if _contains(current["spec"]["template"], desired["spec"]["template"]):
            return "unchanged"
        body = {
            "metadata": {"resourceVersion": current["metadata"]["resourceVersion"]},
            "spec": {"template": desired["spec"]["template"]},
        }
        self._apps.patch_namespaced_deployment(name, policy.namespace, body)
        return "updated"


def _contains(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(_contains(actual.get(k), v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(wanted)
            and all(_contains(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted)
