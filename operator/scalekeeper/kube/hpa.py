"""The HorizontalPodAutoscaler the operator owns for a policy's web Deployment.

The HPA keeps sizing the Deployment on CPU and memory with the spec's behavior; the operator only moves
its `minReplicas` to the request-rate floor the engine decided. An HPA that someone else made for the same
Deployment is never touched: the caller reports a conflict instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from ..model import MAX_NAME_LENGTH, WebSpec
from .names import fitted, label_value
from .owners import OwnerRef, is_owned_by
from .watched import hpa_name_key, hpa_target_key

MANAGED_BY = "scalekeeper"


def hpa_name(policy_name: str) -> str:
    return fitted(f"{policy_name}-web", MAX_NAME_LENGTH)


def desired_hpa(web: WebSpec, policy: OwnerRef, floor: int) -> dict[str, Any]:
    metrics: list[dict[str, Any]] = []
    for resource, target in (("cpu", web.cpu_utilization), ("memory", web.memory_utilization)):
        if target is not None:
            metrics.append(
                {
                    "type": "Resource",
                    "resource": {
                        "name": resource,
                        "target": {"type": "Utilization", "averageUtilization": target},
                    },
                }
            )
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": web.deployment},
        "minReplicas": max(web.min_replicas, min(floor, web.max_replicas)),
        "maxReplicas": web.max_replicas,
        "behavior": web.behavior.hpa_behavior(),
    }
    # With no metric the API server fills in the HPA default (80% CPU); say nothing rather than invent one.
    if metrics:
        spec["metrics"] = metrics
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": hpa_name(policy.name),
            "namespace": policy.namespace,
            "labels": {
                "app.kubernetes.io/managed-by": MANAGED_BY,
                "scalekeeper.dev/policy": label_value(policy.name),
            },
            "ownerReferences": [policy.reference()],
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class HpaState:
    """The owned HPA as found (None: not created yet) and any foreign HPA on the same Deployment."""

    owned: dict[str, Any] | None
    foreign: str | None


def _spec_differs(current: dict[str, Any], desired: dict[str, Any]) -> bool:
    cur, want = current.get("spec", {}), desired["spec"]
    for key in ("scaleTargetRef", "minReplicas", "maxReplicas", "behavior"):
        if key == "behavior":
            if _normalise_behavior(cur.get(key)) != _normalise_behavior(want.get(key)):
                return True
        elif cur.get(key) != want.get(key):
            return True
    return "metrics" in want and cur.get("metrics") != want["metrics"]


def _normalise_behavior(behavior: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for direction, rules in (behavior or {}).items():
        rules = dict(rules or {})
        rules["policies"] = sorted(
            rules.get("policies") or [], key=lambda p: (p["type"], p["value"], p["periodSeconds"])
        )
        out[direction] = rules
    return out


class HpaClient:
    def __init__(self, api: client.ApiClient, autoscaling: Any = None) -> None:
        # `autoscaling`: the AutoscalingV2Api to call (a fake API server's in unit tests).
        self._api = autoscaling or client.AutoscalingV2Api(api)
        self._raw = api

    def observe(self, policy: OwnerRef, deployment: str) -> HpaState:
        listed = self._api.list_namespaced_horizontal_pod_autoscaler(policy.namespace)
        owned: dict[str, Any] | None = None
        foreign: str | None = None
        for item in listed.items:
            obj: dict[str, Any] = self._raw.sanitize_for_serialization(item)
            target = obj["spec"]["scaleTargetRef"]
            if obj["metadata"]["name"] == hpa_name(policy.name) and is_owned_by(obj, policy):
                owned = obj
            elif target.get("kind") == "Deployment" and target.get("name") == deployment:
                foreign = obj["metadata"]["name"]
        return HpaState(owned, foreign)

    @staticmethod
    def state_from(
        watched: Mapping[str, list[dict[str, Any]]], policy: OwnerRef, deployment: str
    ) -> HpaState:
        """The same answer as `observe`, from the operator's HPA index (see kube/watched.py)."""
        owned: dict[str, Any] | None = None
        foreign: str | None = None
        name = hpa_name(policy.name)
        for obj in watched.get(hpa_name_key(policy.namespace, name), []):
            if is_owned_by(obj, policy):
                owned = obj
        for obj in watched.get(hpa_target_key(policy.namespace, deployment), []):
            if obj["metadata"]["name"] != name or not is_owned_by(obj, policy):
                foreign = obj["metadata"]["name"]
        return HpaState(owned, foreign)

    def apply(self, state: HpaState, desired: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
        """Create or update the owned HPA. Returns what was done (created, updated, exists or unchanged)
        and the HPA as the API server answered the write (None when nothing was written)."""
        ns, name = desired["metadata"]["namespace"], desired["metadata"]["name"]
        if state.owned is None:
            try:
                made = self._api.create_namespaced_horizontal_pod_autoscaler(ns, desired)
            except ApiException as exc:
                if exc.status != 409:
                    raise
                # Created by a previous, interrupted cycle: take it over as ours on the next one.
                return "exists", None
            return "created", self._raw.sanitize_for_serialization(made)
        if not _spec_differs(state.owned, desired):
            return "unchanged", None
        # A full replace at the resourceVersion we read: a concurrent edit makes it fail with 409.
        seen = state.owned
        try:
            replaced = self._replace_at(desired, seen["metadata"]["resourceVersion"])
        except ApiException as exc:
            if exc.status != 409:
                raise
            # The HPA controller rewrites the status at every sync, so a version from the watches is
            # often one status behind. Only a change of the spec is another writer's edit: then fail.
            fresh = self._raw.sanitize_for_serialization(
                self._api.read_namespaced_horizontal_pod_autoscaler(name, ns)
            )
            if _spec_differs(fresh, seen):
                raise
            replaced = self._replace_at(desired, fresh["metadata"]["resourceVersion"])
        return "updated", self._raw.sanitize_for_serialization(replaced)

    def _replace_at(self, desired: dict[str, Any], resource_version: str) -> Any:
        meta = desired["metadata"]
        body = {**desired, "metadata": {**meta, "resourceVersion": resource_version}}
        return self._api.replace_namespaced_horizontal_pod_autoscaler(meta["name"], meta["namespace"], body)
