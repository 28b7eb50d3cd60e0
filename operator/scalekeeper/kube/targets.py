"""Reading and writing the replica count of any scalable object.

Objects with a `/scale` subresource (Deployments, StatefulSets, CloudNativePG `Cluster`s...) are read and
written through it; objects without one through a dotted field path (`spec.numberOfInstances`). Every
write carries the resourceVersion it was decided on, so a concurrent writer makes it fail with 409
instead of being overwritten blindly; the caller re-reads and decides again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException


@dataclass(frozen=True)
class TargetRef:
    api_version: str
    kind: str
    name: str
    namespace: str
    replicas_path: str | None = None

    @property
    def group_version(self) -> tuple[str, str]:
        group, _, version = self.api_version.rpartition("/")
        return group, version

    def describe(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ReplicaState:
    replicas: int
    resource_version: str
    # Pods the object reports ready (a Deployment's or StatefulSet's status.readyReplicas), None when
    # it was not read: the /scale subresource carries only status.replicas, which counts pods still
    # starting. A worker's drain estimate divides the completion rate by it (engine ObservedTarget).
    ready: int | None = None


class TargetNotFound(LookupError):
    pass


class WriteConflict(RuntimeError):
    """The object changed since it was read (HTTP 409)."""


@dataclass(frozen=True)
class _Resource:
    plural: str
    has_scale: bool


# One request to an API path: (method, path, body, content type) -> the answer's JSON; ApiException on
# an answer outside 2xx. `raw_call` bound to an ApiClient in production, a fake API server in unit tests.
Transport = Callable[[str, str, Any, str | None], dict[str, Any]]


def transport_for(api: client.ApiClient) -> Transport:
    def call(method: str, path: str, body: Any = None, content_type: str | None = None) -> dict[str, Any]:
        return raw_call(api, method, path, body, content_type)

    return call


class ResourceResolver:
    """Maps apiVersion + kind to the resource's plural name and whether it has /scale (API discovery)."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._cache: dict[str, dict[str, _Resource]] = {}
        self._lock = threading.Lock()

    def resolve(self, api_version: str, kind: str) -> _Resource:
        with self._lock:
            if api_version not in self._cache:
                self._cache[api_version] = self._discover(api_version)
            resources = self._cache[api_version]
        if kind not in resources:
            raise TargetNotFound(f"the API server serves no kind {kind} in {api_version}")
        return resources[kind]

    def _discover(self, api_version: str) -> dict[str, _Resource]:
        path = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
        try:
            data = self._transport("GET", path, None, None)
        except ApiException as exc:
            if exc.status == 404:
                raise TargetNotFound(f"the API server does not serve {api_version}") from exc
            raise
        names = {r["name"] for r in data.get("resources", [])}
        out: dict[str, _Resource] = {}
        for r in data.get("resources", []):
            if "/" not in r["name"]:
                out[r["kind"]] = _Resource(r["name"], f"{r['name']}/scale" in names)
        return out


def raw_call(
    api: client.ApiClient, method: str, path: str, body: Any = None, content_type: str | None = None
) -> dict[str, Any]:
    """A request to any API path, for kinds the generated client has no class for (CRs' /scale)."""
    headers = {"Accept": "application/json"}
    if content_type:
        headers["Content-Type"] = content_type
    _method, url, header_params, serialized, post = api.param_serialize(
        method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"]
    )
    response = api.call_api(_method, url, header_params=header_params, body=serialized, post_params=post)
    response.read()
    if not 200 <= response.status < 300:
        raise ApiException(http_resp=response)
    data: dict[str, Any] = json.loads(response.data)
    return data


def _get_path(obj: dict[str, Any], path: str) -> Any:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _nested(path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    node = out
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


class ReplicaClient:
    # Status writes can follow each other faster than a GET and a PATCH (a Deployment just created or
    # scaled): re-read this many times before the last try.
    STATUS_RETRIES = 3

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._resolver = ResourceResolver(transport)

    def _base_path(self, ref: TargetRef) -> str:
        resource = self._resolver.resolve(ref.api_version, ref.kind)
        prefix = f"/api/{ref.api_version}" if "/" not in ref.api_version else f"/apis/{ref.api_version}"
        return f"{prefix}/namespaces/{ref.namespace}/{resource.plural}/{ref.name}"

    def _call(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> dict[str, Any]:
        try:
            result = self._transport(method, path, body, content_type)
        except ApiException as exc:
            if exc.status == 404:
                raise TargetNotFound(f"{path} not found") from exc
            if exc.status == 409:
                raise WriteConflict(str(exc.reason)) from exc
            raise
        return result

    def read(self, ref: TargetRef) -> ReplicaState:
        resource = self._resolver.resolve(ref.api_version, ref.kind)
        base = self._base_path(ref)
        if ref.replicas_path or not resource.has_scale:
            if not ref.replicas_path:
                raise TargetNotFound(
                    f"{ref.describe()} has no /scale subresource and no replicasPath was given"
                )
            obj = self._call("GET", base)
            value = _get_path(obj, ref.replicas_path)
            if not isinstance(value, int):
                raise TargetNotFound(f"{ref.describe()} has no integer at {ref.replicas_path}")
            return ReplicaState(value, obj["metadata"]["resourceVersion"])
        scale = self._call("GET", base + "/scale")
        return ReplicaState(
            int((scale.get("spec") or {}).get("replicas") or 0), scale["metadata"]["resourceVersion"]
        )

    def write_unless_resized(self, ref: TargetRef, replicas: int, seen: ReplicaState) -> ReplicaState:
        """Set replicas if nobody changed the replica count since `seen`; WriteConflict if someone did.

        `seen` may come from a watch a little behind the API server. A Deployment's controller bumps the
        resourceVersion at every status change (each pod that becomes ready), so a 409 from such a stale
        version is usually not another writer: re-read (up to STATUS_RETRIES times) and write at the fresh
        version while the count is still the one the decision was made on."""
        version = seen.resource_version
        for _ in range(self.STATUS_RETRIES):
            try:
                return self.write(ref, replicas, version)
            except WriteConflict:
                fresh = self.read(ref)
            if fresh.replicas != seen.replicas:
                raise WriteConflict(
                    f"{ref.describe()} was resized to {fresh.replicas} by another writer "
                    f"(the decision saw {seen.replicas})"
                )
            version = fresh.resource_version
        return self.write(ref, replicas, version)

    def write(self, ref: TargetRef, replicas: int, resource_version: str) -> ReplicaState:
        """Set replicas if the object is still at `resource_version`; WriteConflict otherwise."""
        resource = self._resolver.resolve(ref.api_version, ref.kind)
        base = self._base_path(ref)
        if ref.replicas_path or not resource.has_scale:
            assert ref.replicas_path
            body = _nested(ref.replicas_path, replicas)
            body["metadata"] = {"resourceVersion": resource_version}
            obj = self._call("PATCH", base, body, "application/merge-patch+json")
            return ReplicaState(replicas, obj["metadata"]["resourceVersion"])
        body = {"metadata": {"resourceVersion": resource_version}, "spec": {"replicas": replicas}}
        scale = self._call("PATCH", base + "/scale", body, "application/merge-patch+json")
        return ReplicaState(int(scale["spec"]["replicas"]), scale["metadata"]["resourceVersion"])
