"""A fake API server for unit tests of the cycle: it behaves like the real one where the cycle depends on
it (resourceVersion preconditions answered with 409, absent objects with 404, create of an existing object
with 409, injected 429/5xx), and records nothing about calls: tests look at the objects, as on kind."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from scalekeeper.cycle import CycleResult, Reconciler
from scalekeeper.kube.hpa import HpaClient
from scalekeeper.kube.pods import PodCosts, WorkerPod, pod_entry
from scalekeeper.kube.targets import ReplicaClient
from scalekeeper.kube.watched import Watched, replica_entry
from scalekeeper.kube.workers import WorkerDeployments
from scalekeeper.memory import PolicyMemory
from scalekeeper.opmetrics import OperatorMetrics
from scalekeeper.policy import PolicyObject
from tests.cycle_scenarios import StandInMetrics, claimants, watched_hpas

_PATH = re.compile(r"^/apis/apps/v1/namespaces/([^/]+)/(deployments|statefulsets)/([^/]+)(/scale)?$")
_KINDS = {"deployments": "Deployment", "statefulsets": "StatefulSet"}


def _refused(status: int, reason: str) -> ApiException:
    return ApiException(status=status, reason=reason)


@dataclass
class FakeClock:
    """Wall and monotonic time, moved by the test."""

    now: float = 1_700_000_000.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - 1_600_000_000.0


@dataclass
class FakeApiServer:
    namespace: str = "shop"
    version: int = 100
    # plural -> name -> body (Deployments and StatefulSets, HPAs, ScalingPolicies)
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    # (method, kind of object) -> statuses to answer next, in order: injected faults
    faults: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    # path -> (status, the API server's answer) for server-side dry-runs it refuses; every dry-run's path
    dry_run_answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    dry_runs: list[str] = field(default_factory=list)
    # Replica writes as the API server accepted them, in order: ("scale", replicas) for a /scale patch,
    # ("hpa", minReplicas) for an HPA created or replaced.
    replica_writes: list[tuple[str, int]] = field(default_factory=list)

    def _bump(self, body: dict[str, Any]) -> None:
        self.version += 1
        body["metadata"]["resourceVersion"] = str(self.version)

    def _fault(self, method: str, kind: str) -> None:
        pending = self.faults.get((method, kind))
        if pending:
            raise _refused(pending.pop(0), "injected")

    def _get(self, plural: str, name: str) -> dict[str, Any]:
        found = self.objects.get(plural, {}).get(name)
        if found is None:
            raise _refused(404, "Not Found")
        return found

    def put(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(body)
        body.setdefault("metadata", {})["namespace"] = self.namespace
        body["metadata"].setdefault("uid", f"uid-{plural}-{body['metadata']['name']}")
        self._bump(body)
        self.objects.setdefault(plural, {})[body["metadata"]["name"]] = body
        return body

    # ---------------------------------------------------------------- the /scale path (ReplicaClient)

    def transport(
        self, method: str, path: str, body: Any = None, content_type: str | None = None
    ) -> dict[str, Any]:
        if path == "/apis/apps/v1":
            resources = [{"name": p, "kind": k} for p, k in _KINDS.items()]
            return {"resources": resources + [{"name": f"{p}/scale", "kind": "Scale"} for p in _KINDS]}
        match = _PATH.match(path)
        if match is None:
            raise _refused(404, "Not Found")
        _, plural, name, scale = match.groups()
        self._fault(method, _KINDS[plural])
        obj = self._get(plural, name)
        if scale is None:
            return copy.deepcopy(obj)
        if method == "PATCH":
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and wanted != obj["metadata"]["resourceVersion"]:
                raise _refused(409, "Conflict")
            obj["spec"]["replicas"] = body["spec"]["replicas"]
            self._bump(obj)
            self.replica_writes.append(("scale", int(body["spec"]["replicas"])))
        meta = obj["metadata"]
        return {
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "resourceVersion": meta["resourceVersion"],
            },
            "spec": {"replicas": obj["spec"]["replicas"]},
        }

    # ---------------------------------------------------------------- AutoscalingV2Api (HpaClient)

    def list_namespaced_horizontal_pod_autoscaler(self, namespace: str) -> Any:
        return SimpleNamespace(items=[copy.deepcopy(h) for h in self.objects.get("hpas", {}).values()])

    def read_namespaced_horizontal_pod_autoscaler(self, name: str, namespace: str) -> dict[str, Any]:
        return copy.deepcopy(self._get("hpas", name))

    def create_namespaced_horizontal_pod_autoscaler(
        self, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        self._fault("POST", "HorizontalPodAutoscaler")
        if body["metadata"]["name"] in self.objects.get("hpas", {}):
            raise _refused(409, "AlreadyExists")
        self.replica_writes.append(("hpa", int(body["spec"]["minReplicas"])))
        return copy.deepcopy(self.put("hpas", body))

    def replace_namespaced_horizontal_pod_autoscaler(
        self, name: str, namespace: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        self._fault("PUT", "HorizontalPodAutoscaler")
        current = self._get("hpas", name)
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise _refused(409, "Conflict")
        current["spec"] = copy.deepcopy(body["spec"])
        self._bump(current)
        self.replica_writes.append(("hpa", int(body["spec"]["minReplicas"])))
        return copy.deepcopy(current)

    # ---------------------------------------------------------------- AppsV1Api (WorkerDeployments)

    def read_namespaced_deployment(self, name: str, namespace: str) -> dict[str, Any]:
        return copy.deepcopy(self._get("deployments", name))

    def create_namespaced_deployment(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self._fault("POST", "Deployment")
        if body["metadata"]["name"] in self.objects.get("deployments", {}):
            raise _refused(409, "AlreadyExists")
        return copy.deepcopy(self.put("deployments", body))

    def patch_namespaced_deployment(self, name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        current = self._get("deployments", name)
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise _refused(409, "Conflict")
        current["spec"]["template"] = copy.deepcopy(body["spec"]["template"])
        self._bump(current)
        return copy.deepcopy(current)

    # ---------------------------------------------------------------- CoreV1Api (PodCosts)

    def patch_namespaced_pod(self, name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self._fault("PATCH", "Pod")
        pod = self._get("pods", name)
        pod["metadata"].setdefault("annotations", {}).update(body["metadata"]["annotations"])
        self._bump(pod)
        return copy.deepcopy(pod)

    # ---------------------------------------------------------------- server-side dry-runs

    def dry_run(self, path: str, body: dict[str, Any]) -> None:
        self.dry_runs.append(path)
        answer = self.dry_run_answers.get(path)
        if answer is not None:
            status, detail = answer
            refusal = ApiException(status=status, reason="refused")
            refusal.body = json.dumps(detail)
            raise refusal

    # ---------------------------------------------------------------- what the watches see

    def watched(self) -> Watched:
        replicas: dict[str, Any] = {}
        for plural, kind in _KINDS.items():
            for body in self.objects.get(plural, {}).values():
                replicas.update(replica_entry(kind, body))
        hpas = watched_hpas(self.objects.get("hpas", {}).values())
        pods: dict[str, list[WorkerPod]] = {}
        for body in self.objects.get("pods", {}).values():
            for key, pod in pod_entry(body).items():
                pods.setdefault(key, []).append(pod)
        return Watched(replicas, hpas, hpas_watched=True, pods=pods, pods_watched=True)

    def write_status(self, name: str, status: dict[str, Any]) -> None:
        self._fault("PATCH", "ScalingPolicy")
        policy = self._get("policies", name)
        policy["status"] = copy.deepcopy(status)
        self._bump(policy)


class FakeWorld:
    """The scenarios' World (tests/cycle_scenarios.py) on the fake API server."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.api = FakeApiServer()
        self.prometheus = StandInMetrics(self.clock.wall)
        self.metrics = OperatorMetrics()
        raw = client.ApiClient()
        self.reconciler = Reconciler(
            ReplicaClient(self.api.transport),
            HpaClient(raw, autoscaling=self.api),
            WorkerDeployments(raw, apps=self.api),
            PodCosts(raw, core=self.api),
            self.prometheus,  # type: ignore[arg-type]
            self.metrics,
            clock=self.clock.wall,
            monotonic=self.clock.monotonic,
            dry_run=self.api.dry_run,
        )
        self.events: list[tuple[str, str, str]] = []
        self.memories: dict[str, PolicyMemory] = {}
        self.bodies: dict[str, dict[str, Any]] = {}
        self.seen: Watched | None = None

    def target(self, replicas: int) -> None:
        self.api.put(
            "deployments", {"metadata": {"name": "db"}, "spec": {"replicas": replicas}, "status": {}}
        )

    def policy(self, name: str, spec: dict[str, Any]) -> None:
        self.clock.now += 1  # creationTimestamp has one-second resolution
        body = {"metadata": {"name": name, "generation": 1}, "spec": spec}
        made = self.api.put("policies", body)
        made["metadata"]["creationTimestamp"] = f"t{self.clock.now:.0f}"
        self.bodies[name] = made

    def load(self, value: float | None) -> None:
        self.prometheus.value = value

    def snapshot(self) -> None:
        self.seen = self.api.watched()

    def cycle(self, name: str, claimed_by: tuple[str, ...] = ()) -> CycleResult:
        self.clock.now += 5
        body = self.api.objects.get("policies", {}).get(name) or self.bodies[name]
        policy = PolicyObject.from_body(body)
        return self.reconciler.run(
            policy,
            self.memories.setdefault(name, PolicyMemory()),
            lambda *event: self.events.append(event),
            lambda status: self.api.write_status(name, status),
            claimants(self.bodies, (name, *claimed_by)),
            self.seen if self.seen is not None else self.api.watched(),
        )

    def replicas(self) -> int:
        return int(self.api.objects["deployments"]["db"]["spec"]["replicas"])

    def touch(self) -> None:
        self.api._bump(self.api.objects["deployments"]["db"])

    def resize(self, replicas: int) -> None:
        target = self.api.objects["deployments"]["db"]
        target["spec"]["replicas"] = replicas
        self.api._bump(target)

    def delete_policy(self, name: str) -> None:
        del self.api.objects["policies"][name]

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.api.objects["policies"][name].get("status") or {})

    def hpa(self, name: str) -> dict[str, Any] | None:
        return self.api.objects.get("hpas", {}).get(name)
