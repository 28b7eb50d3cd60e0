"""Worker pods as the operator's pod watch sees them, and the one write it makes to a pod: its
`controller.kubernetes.io/pod-deletion-cost` annotation.

A ReplicaSet scaling down removes the pods of lowest deletion cost first (after pods not yet ready), so
the operator sets each worker pod's cost to the tasks it is executing before lowering the Deployment, and
idle workers go first. Pods are indexed by the Deployment that owns them: a Deployment's ReplicaSet is
named `<deployment>-<pod-template-hash>`, and its pods carry that hash as a label, so no ReplicaSet needs
watching. The chart's ValidatingAdmissionPolicy refuses any other change the operator's account would make
to a pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"


@dataclass(frozen=True, slots=True)
class WorkerPod:
    """One pod of a Deployment: its name, its deletion cost as written (None: no annotation), and whether
    it is ready and not being deleted (a pod not ready is removed first whatever its cost)."""

    name: str
    cost: str | None
    ready: bool


def pods_key(namespace: str, deployment: str) -> str:
    return f"pods/{namespace}/{deployment}"


def pod_entry(body: Mapping[str, Any]) -> dict[str, WorkerPod]:
    """A pod under its Deployment's key; nothing for a pod no Deployment owns."""
    meta = body["metadata"]
    template_hash = (meta.get("labels") or {}).get("pod-template-hash")
    if not template_hash:
        return {}
    suffix = f"-{template_hash}"
    for ref in meta.get("ownerReferences") or []:
        owner = str(ref.get("name", ""))
        if ref.get("kind") == "ReplicaSet" and ref.get("controller") and owner.endswith(suffix):
            conditions = (body.get("status") or {}).get("conditions") or []
            ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
            pod = WorkerPod(
                str(meta["name"]),
                (meta.get("annotations") or {}).get(DELETION_COST),
                ready and not meta.get("deletionTimestamp"),
            )
            return {pods_key(str(meta["namespace"]), owner[: -len(suffix)]): pod}
    return {}


class PodCosts:
    """Writes a pod's deletion cost: a merge patch of that one annotation."""

    def __init__(self, api: client.ApiClient, core: Any = None) -> None:
        self._core = core or client.CoreV1Api(api)

    def write(self, namespace: str, pod: str, cost: int) -> None:
        body = {"metadata": {"annotations": {DELETION_COST: str(cost)}}}
        self._core.patch_namespaced_pod(pod, namespace, body)
