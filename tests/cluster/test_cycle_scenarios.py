"""The cycle scenarios of tests/cycle_scenarios.py against the real API server: the same table the unit
tests run on a fake one. The cycle runs in this process (`Reconciler.run`, with the operator's own
adapters) on real objects: a Deployment whose pods can never be scheduled (nothing runs), real
ScalingPolicies with their status subresource, real HPAs. What the watches would show is read from the
API server at `snapshot`. The metric comes from a stand-in reader: the queries' path through the real
Prometheus is proven by the operator's end-to-end tests (test_operator_basics, test_faults)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from scalekeeper.cycle import CycleResult, Reconciler
from scalekeeper.kube.dryrun import dry_run_call
from scalekeeper.kube.hpa import HpaClient
from scalekeeper.kube.pods import PodCosts
from scalekeeper.kube.targets import ReplicaClient, transport_for
from scalekeeper.kube.watched import Watched, replica_entry
from scalekeeper.kube.workers import WorkerDeployments
from scalekeeper.memory import PolicyMemory
from scalekeeper.opmetrics import OperatorMetrics
from scalekeeper.policy import PolicyObject
from tests.cycle_scenarios import (
    SCENARIOS,
    TARGET,
    StandInMetrics,
    World,
    claimants,
    condition,
    replicas_spec,
    watched_hpas,
)

from .conftest import Cluster, release_policies
from .kube_helpers import GROUP, PLURAL, VERSION, apply_policy
from .operator_fixture import install_crd


class KindWorld:
    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster, self.api, self.ns = cluster, cluster.api, namespace
        self.apps = client.AppsV1Api(cluster.api)
        self.autoscaling = client.AutoscalingV2Api(cluster.api)
        self.objects = client.CustomObjectsApi(cluster.api)
        self.metric = StandInMetrics(time.time)
        self.reconciler = Reconciler(
            ReplicaClient(transport_for(cluster.api)),
            HpaClient(cluster.api),
            WorkerDeployments(cluster.api),
            PodCosts(cluster.api),
            self.metric,  # type: ignore[arg-type]
            OperatorMetrics(),
            dry_run=dry_run_call(cluster.api),
        )
        self.events: list[tuple[str, str, str]] = []
        self.memories: dict[str, PolicyMemory] = {}
        self.bodies: dict[str, dict[str, Any]] = {}
        self.seen: Watched | None = None

    def target(self, replicas: int) -> None:
        labels = {"app": TARGET}
        pod = {
            "metadata": {"labels": labels},
            # Never scheduled: the scenarios size the object, no pod needs to run.
            "spec": {
                "nodeSelector": {"scalekeeper.dev/scenario": "nowhere"},
                "containers": [{"name": "main", "image": "scenario.invalid/none"}],
            },
        }
        body = {
            "metadata": {"name": TARGET},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": pod},
        }
        self.apps.create_namespaced_deployment(self.ns, body)

    def policy(self, name: str, spec: dict[str, Any]) -> None:
        if self.bodies:
            time.sleep(1.1)  # creationTimestamp has one-second resolution: the claim order needs two
        self.bodies[name] = apply_policy(self.cluster, self.ns, name, spec)

    def load(self, value: float | None) -> None:
        self.metric.value = value

    def snapshot(self) -> None:
        self.seen = self._watched()

    def _watched(self) -> Watched:
        replicas: dict[str, Any] = {}
        for item in self.apps.list_namespaced_deployment(self.ns).items:
            replicas.update(replica_entry("Deployment", self.api.sanitize_for_serialization(item)))
        listed = self.autoscaling.list_namespaced_horizontal_pod_autoscaler(self.ns).items
        hpas = watched_hpas(self.api.sanitize_for_serialization(item) for item in listed)
        return Watched(replicas, hpas, hpas_watched=True)

    def _body(self, name: str) -> dict[str, Any]:
        try:
            found: dict[str, Any] = self.objects.get_namespaced_custom_object(
                GROUP, VERSION, self.ns, PLURAL, name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            return self.bodies[name]
        return found

    def cycle(self, name: str, claimed_by: tuple[str, ...] = ()) -> CycleResult:
        def write_status(status: dict[str, Any]) -> None:
            self.objects.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.ns, PLURAL, name, {"status": status}
            )

        return self.reconciler.run(
            PolicyObject.from_body(self._body(name)),
            self.memories.setdefault(name, PolicyMemory()),
            lambda *event: self.events.append(event),
            write_status,
            claimants(self.bodies, (name, *claimed_by)),
            self.seen if self.seen is not None else self._watched(),
        )

    def replicas(self) -> int:
        return int(self.apps.read_namespaced_deployment_scale(TARGET, self.ns).spec.replicas or 0)

    def touch(self) -> None:
        patch = {"metadata": {"annotations": {"scenario/touched": str(time.time())}}}
        self.apps.patch_namespaced_deployment(TARGET, self.ns, patch)

    def resize(self, replicas: int) -> None:
        self.apps.patch_namespaced_deployment_scale(TARGET, self.ns, {"spec": {"replicas": replicas}})

    def delete_policy(self, name: str) -> None:
        self.objects.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return dict(self._body(name).get("status") or {})

    def hpa(self, name: str) -> dict[str, Any] | None:
        try:
            found = self.autoscaling.read_namespaced_horizontal_pod_autoscaler(name, self.ns)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        body: dict[str, Any] = self.api.sanitize_for_serialization(found)
        return body


@pytest.fixture
def own_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace outside the session operator's (t-*, demo-*): only the scenario acts here."""
    install_crd(cluster)
    name = f"cycle-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        release_policies(cluster, name)
        core.delete_namespace(name, propagation_policy="Background")


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_scenario(scenario: Callable[[World], None], cluster: Cluster, own_namespace: str) -> None:
    scenario(KindWorld(cluster, own_namespace))


def test_a_worker_the_api_server_would_refuse_holds_and_the_refusal_names_the_field(
    cluster: Cluster, own_namespace: str
) -> None:
    w = KindWorld(cluster, own_namespace)
    w.target(1)
    # Accepted by the CRD and the model (a pod template's fields are the pod's own); a Deployment's pods
    # must restart Always, which only the API server's validation of the Deployment knows.
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "worker", "image": "app"}]}}
    spec = replicas_spec(
        workers=[{"queue": "video", "template": template, "maxReplicas": 5, "tasksPerWorker": 10}]
    )
    w.policy("p", spec)
    w.load(35)
    w.cycle("p")
    assert w.replicas() == 4  # the read replicas went on
    names = [d.metadata.name for d in w.apps.list_namespaced_deployment(own_namespace).items]
    assert names == [TARGET]  # the worker's Deployment was never created
    status = w.status("p")
    spec_valid = condition(status, "SpecValid")
    assert (spec_valid["status"], spec_valid["reason"]) == ("False", "RefusedByAPIServer")
    assert "spec.template.spec.restartPolicy" in spec_valid["message"], spec_valid["message"]
    assert status["verification"]["generation"] == status["observedGeneration"]
