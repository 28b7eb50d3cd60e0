"""What the operator's watches see: the objects policies size (replica counts, HPAs, worker pods) and
every policy's claims.

Informers (kube/informer.py) keep an index of every Deployment, StatefulSet and HPA in the served
namespaces. A cycle reads its targets from there instead of one GET per target and one HPA list per
policy: at thousands of policies those reads were most of the operator's CPU and of the API server's
load. The index is only a fast path: what it has not seen (another kind, an object that may not exist) is
read as before.

Entries are small tuples and packed bodies (kube/packed.py), not whole bodies as dicts, so the index stays
small with many objects.

The claims (which workloads each policy names) were a kopf index; kopf holds every listed policy's body, its
handlers waiting, until that index is filled, and wakes every waiting one as each is indexed: at 10,000
policies three minutes of the event loop before the first cycle. An informer lists in pages and keeps the
claims alone.
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from ..engine.claims import PolicyId
from ..model.base import GROUP, PLURAL, VERSION
from .informer import BodyListener, EntryIndex, EntryOf, Informer, SourceOf
from .packed import pack, unpack
from .pods import WorkerPod, pod_entry
from .targets import ReplicaState, TargetRef

# Kinds whose `/scale` replicas are the object's own `spec.replicas`, with the same resourceVersion.
WATCHED_KINDS = {("apps/v1", "Deployment"), ("apps/v1", "StatefulSet")}


def replica_key(kind: str, namespace: str, name: str) -> str:
    return f"{kind}/{namespace}/{name}"


def hpa_name_key(namespace: str, name: str) -> str:
    return f"name/{namespace}/{name}"


def hpa_target_key(namespace: str, deployment: str) -> str:
    return f"target/{namespace}/{deployment}"


def replica_entry(kind: str, body: Mapping[str, Any]) -> dict[str, ReplicaState]:
    meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status")
    state = ReplicaState(
        int(spec.get("replicas", 1)),
        str(meta["resourceVersion"]),
        # The API server omits a zero readyReplicas; only a body without any status (not yet seen by
        # its controller) leaves the ready pods unknown.
        ready=None if not status else int(status.get("readyReplicas") or 0),
    )
    return {replica_key(kind, meta["namespace"], meta["name"]): state}


def hpa_entry(body: Mapping[str, Any]) -> dict[str, bytes]:
    """One trimmed HPA, packed (kube/packed.py), under two keys: its name (to find the owned one) and the
    Deployment it sizes (to find another's on the web Deployment). Packed because every replica holds
    every HPA and reads only its own policies'."""
    meta, spec = body["metadata"], dict(body.get("spec") or {})
    trimmed = {
        "metadata": {
            "name": meta["name"],
            "namespace": meta["namespace"],
            "resourceVersion": meta["resourceVersion"],
            "ownerReferences": list(meta.get("ownerReferences") or []),
        },
        "spec": spec,
    }
    packed = pack(trimmed)
    keys = {hpa_name_key(meta["namespace"], meta["name"]): packed}
    ref = spec.get("scaleTargetRef") or {}
    if ref.get("kind") == "Deployment" and ref.get("name"):
        keys[hpa_target_key(meta["namespace"], ref["name"])] = packed
    return keys


@dataclass(frozen=True)
class Watched:
    """One cycle's copy of what the watches saw for one policy's objects. `None` for a key means the
    watches have not seen it (absent, or not a watched kind): read it from the API server."""

    replicas: Mapping[str, ReplicaState] = field(default_factory=dict)
    hpas: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    # False when no HPA index runs (a caller without kopf): list HPAs instead.
    hpas_watched: bool = False
    # A Deployment's pods by kube/pods.py's key; a key absent: no pod seen, or the pod watch has not listed.
    pods: Mapping[str, list[WorkerPod]] = field(default_factory=dict)
    pods_watched: bool = False

    def replica_state(self, ref: TargetRef) -> ReplicaState | None:
        if not watches_kind(ref):
            return None
        return self.replicas.get(replica_key(ref.kind, ref.namespace, ref.name))

    def pods_of(self, key: str) -> list[WorkerPod] | None:
        """The pods under a Deployment's key; None when the pod watch has not listed yet."""
        return list(self.pods.get(key, [])) if self.pods_watched else None


def spec_source(body: Mapping[str, Any]) -> tuple[str, int]:
    """What a policy's claims are made from: its spec (one per generation) and its name, namespace and
    creation time (one per uid)."""
    meta = body["metadata"]
    return str(meta.get("uid", "")), int(meta.get("generation") or 0)


def watches_kind(ref: TargetRef) -> bool:
    """Whether the watches index this target's replicas (its own spec.replicas, not a replicasPath)."""
    return not ref.replicas_path and (ref.api_version, ref.kind) in WATCHED_KINDS


class WatchedObjects:
    """The informers of Deployments, StatefulSets, HPAs, pods and policies in the served namespaces, and
    their indexes. `claims_of`: a policy's body -> the workloads it names (policy.claims_of).

    No namespaces: cluster-wide. Plain names: one watch per name and kind (what namespaced RBAC allows).
    Any glob ("team-*"): cluster-wide, filtered here (needs cluster-wide list/watch)."""

    def __init__(
        self,
        api: client.ApiClient,
        namespaces: Sequence[str] = (),
        claims_of: EntryOf[PolicyId] = lambda _: {},
    ) -> None:
        self.replicas: EntryIndex[ReplicaState] = EntryIndex()
        self.hpas: EntryIndex[bytes] = EntryIndex()
        self.pods: EntryIndex[WorkerPod] = EntryIndex()
        self.claims: EntryIndex[PolicyId] = EntryIndex()
        apps, autoscaling = client.AppsV1Api(api), client.AutoscalingV2Api(api)
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        EntryFn = Callable[[Mapping[str, Any]], Mapping[str, Any]]
        kinds: list[tuple[str, Any, Any, EntryFn, EntryIndex[Any], SourceOf | None]] = [
            (
                "deployments",
                apps.list_deployment_for_all_namespaces,
                apps.list_namespaced_deployment,
                lambda body: replica_entry("Deployment", body),
                self.replicas,
                None,
            ),
            (
                "statefulsets",
                apps.list_stateful_set_for_all_namespaces,
                apps.list_namespaced_stateful_set,
                lambda body: replica_entry("StatefulSet", body),
                self.replicas,
                None,
            ),
            (
                "horizontalpodautoscalers",
                autoscaling.list_horizontal_pod_autoscaler_for_all_namespaces,
                autoscaling.list_namespaced_horizontal_pod_autoscaler,
                hpa_entry,
                self.hpas,
                None,
            ),
            # Worker pods' deletion costs (busy-worker protection); each pod kept as a name and two fields.
            ("pods", core.list_pod_for_all_namespaces, core.list_namespaced_pod, pod_entry, self.pods, None),
            (
                PLURAL,
                functools.partial(custom.list_cluster_custom_object, GROUP, VERSION, PLURAL),
                lambda ns, **kw: custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, **kw),
                claims_of,
                self.claims,
                spec_source,
            ),
        ]
        globbed = any(ch in "".join(namespaces) for ch in "*?[")
        self.informers: list[Informer[Any]] = []
        for plural, list_all, list_in, entry_of, index, source_of in kinds:
            if not namespaces or globbed:
                self.informers.append(
                    Informer(
                        plural,
                        list_all,
                        entry_of,
                        index,
                        namespace_ok=namespace_filter(namespaces),
                        source_of=source_of,
                    )
                )
            else:
                for ns in namespaces:
                    bound = _bind_namespace(list_in, ns)
                    self.informers.append(
                        Informer(
                            f"{plural} in {ns}",
                            bound,
                            entry_of,
                            index,
                            namespace_ok=ns.__eq__,
                            source_of=source_of,
                        )
                    )

    def feed_policies(self, listener: BodyListener) -> None:
        """Tell `listener` every policy body the policy informers see (before start())."""
        for informer in self.informers:
            if informer.index is self.claims:
                informer.listener = listener

    def start(self) -> None:
        for informer in self.informers:
            informer.start()

    def stop(self) -> None:
        for informer in self.informers:
            informer.stop()

    def ready(self) -> bool:
        """Every informer has listed once."""
        return all(informer.ready.is_set() for informer in self.informers)

    def wait_claims_listed(self, timeout: float) -> bool:
        """Whether every policy informer has listed once, waiting up to `timeout` seconds for it: until
        then a policy cannot tell which others name its workloads."""
        return all(i.ready.wait(timeout) for i in self.informers if i.index is self.claims)

    def claimants(self, keys: list[str]) -> dict[str, list[PolicyId]]:
        """Every policy naming each of these workloads."""
        return {key: self.claims.get(key) for key in keys}

    def snapshot(self, keys: list[str]) -> Watched:
        """What the informers hold for these keys. A workload they have not seen is read from the API
        server by the cycle, so an informer that has not listed yet (or cannot: RBAC) costs reads, never
        a wrong answer; HPAs count as watched only once every HPA informer has listed, since a missing
        HPA there means "none" and the cycle would create one."""
        replicas: dict[str, ReplicaState] = {}
        hpas: dict[str, list[dict[str, Any]]] = {}
        unpacked: dict[bytes, dict[str, Any]] = {}
        pods: dict[str, list[WorkerPod]] = {}
        for key in keys:
            for state in self.replicas.get(key):
                replicas[key] = state
            found = self.hpas.get(key)
            if found:
                hpas[key] = [_unpack_once(packed, unpacked) for packed in found]
            seen = self.pods.get(key)
            if seen:
                pods[key] = seen
        return Watched(
            replicas,
            hpas,
            hpas_watched=self._listed(self.hpas),
            pods=pods,
            pods_watched=self._listed(self.pods),
        )

    def _listed(self, index: EntryIndex[Any]) -> bool:
        return all(i.ready.is_set() for i in self.informers if i.index is index)


def _unpack_once(packed: bytes, unpacked: dict[bytes, dict[str, Any]]) -> dict[str, Any]:
    """An HPA sits under two keys (its name, the Deployment it sizes): a snapshot unpacks it once, and
    both keys hand the cycle the same copy."""
    if packed not in unpacked:
        unpacked[packed] = unpack(packed)
    return unpacked[packed]


def namespace_filter(namespaces: Sequence[str]) -> Callable[[str], bool]:
    if not namespaces:
        return lambda _: True
    patterns = tuple(namespaces)
    return lambda ns: any(fnmatch.fnmatchcase(ns, p) for p in patterns)


def _bind_namespace(list_in: Callable[..., Any], namespace: str) -> Callable[..., Any]:
    def list_fn(**kwargs: Any) -> Any:
        return list_in(namespace, **kwargs)

    return list_fn
