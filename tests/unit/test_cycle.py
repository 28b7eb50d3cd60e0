"""The cycle (observe, decide, act, report) on a fake API server with a fake clock: the shared scenario
table (tests/cycle_scenarios.py, also run on kind), then what only a fake can inject."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from kubernetes.client.rest import ApiException

from tests.cycle_scenarios import SCENARIOS, World, condition, reasons, replicas_spec
from tests.unit.fake_cluster import FakeWorld


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_scenario(scenario: Callable[[World], None]) -> None:
    scenario(FakeWorld())


def test_a_failed_write_is_told_as_degraded_never_as_scaled_and_costs_no_rate_limit() -> None:
    w = FakeWorld()
    w.target(1)
    w.policy("p", replicas_spec())
    w.load(35)
    w.api.faults[("PATCH", "Deployment")] = [500]
    result = w.cycle("p")
    assert w.replicas() == 1 and result.writes == 0
    assert "Scaled" not in reasons(w)
    ready = condition(w.status("p"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Degraded")
    assert "writing replicas of Deployment shop/db failed" in ready["message"]
    w.cycle("p")  # the same step again: the failed one was not recorded against the scale-up policies
    assert w.replicas() == 4 and reasons(w).count("Scaled") == 1
    assert condition(w.status("p"), "Ready")["status"] == "True"


def test_a_throttled_status_write_goes_out_on_the_next_cycle() -> None:
    w = FakeWorld()
    w.target(1)
    w.policy("p", replicas_spec())
    w.load(35)
    w.api.faults[("PATCH", "ScalingPolicy")] = [429]
    first = w.cycle("p")
    assert not first.status_written and w.status("p") == {} and w.replicas() == 4
    assert w.metrics.registry.get_sample_value(
        "scalekeeper_scale_writes_total", {"kind": "status", "outcome": "deferred"}
    )
    second = w.cycle("p")
    assert second.status_written and w.status("p")["targets"][0]["desiredReplicas"] == 4


def test_scale_down_waits_its_window_on_the_injected_clock() -> None:
    w = FakeWorld()
    w.target(4)
    w.policy("p", replicas_spec())
    w.load(40)
    w.cycle("p")
    w.load(10)
    for _ in range(10):  # 50 s of the 300 s window
        w.cycle("p")
    assert w.replicas() == 4 and w.status("p")["targets"][0]["limitedBy"] == "stabilization"
    w.clock.now += 300
    w.cycle("p")
    assert w.replicas() == 1


def test_an_hpa_behind_one_status_write_is_updated_and_an_edited_one_is_not() -> None:
    w = FakeWorld()
    w.target(1)
    spec = {"web": {"deployment": "db", "maxReplicas": 8, "requestRate": {"query": "r", "perReplica": 10.0}}}
    w.policy("p", spec)
    w.load(35)
    w.cycle("p")
    w.snapshot()
    w.api._bump(w.api.objects["hpas"]["p-web"])  # the HPA controller's status write
    w.clock.now += 60
    w.load(55)
    w.cycle("p")
    assert w.api.objects["hpas"]["p-web"]["spec"]["minReplicas"] == 6
    w.snapshot()
    edited = w.api.objects["hpas"]["p-web"]
    edited["spec"]["maxReplicas"] = 7  # someone edits the spec under us
    w.api._bump(edited)
    w.clock.now += 60
    w.load(75)
    result = w.cycle("p")
    assert edited["spec"]["minReplicas"] == 6 and edited["spec"]["maxReplicas"] == 7
    assert any("writing HPA p-web failed (409" in e for e in result.errors)


def test_a_templated_worker_is_created_by_act_and_sized_from_the_next_cycle() -> None:
    w = FakeWorld()
    template = {"spec": {"containers": [{"name": "worker", "image": "app"}]}}
    spec = {"workers": [{"queue": "video", "template": template, "maxReplicas": 5, "tasksPerWorker": 10}]}
    w.policy("p", spec)
    w.load(20)
    w.cycle("p")
    made = w.api.objects["deployments"]["p-worker-video"]
    assert made["spec"]["replicas"] == 0 and made["metadata"]["ownerReferences"][0]["name"] == "p"
    assert reasons(w) == ["Created"]
    assert condition(w.status("p"), "Ready")["status"] == "True"  # expected absence, not a fault
    w.cycle("p")
    # 20 waiting at 10 a worker (in flight counts only up to what running workers can hold: none yet)
    assert made["spec"]["replicas"] == 2


def test_dry_run_creates_no_worker_deployment() -> None:
    w = FakeWorld()
    template = {"spec": {"containers": [{"name": "worker", "image": "app"}]}}
    spec = {
        "mode": "DryRun",
        "workers": [{"queue": "video", "template": template, "maxReplicas": 5, "tasksPerWorker": 10}],
    }
    w.policy("p", spec)
    w.load(20)
    w.cycle("p")
    assert "deployments" not in w.api.objects
    ready = condition(w.status("p"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TargetsUnavailable")


def test_nothing_but_act_writes_to_a_workload() -> None:
    w = FakeWorld()
    w.target(1)
    spec = replicas_spec(
        web={"deployment": "db", "maxReplicas": 8, "requestRate": {"query": "r", "perReplica": 1.0}}
    )
    spec["readReplicas"]["target"]["name"] = "other"
    w.api.put("deployments", {"metadata": {"name": "other"}, "spec": {"replicas": 1}, "status": {}})
    w.policy("p", spec)
    w.load(35)
    before = {
        plural: {n: dict(b["metadata"]) for n, b in objs.items()} for plural, objs in w.api.objects.items()
    }
    w.reconciler._act = lambda c, may_write: 0  # type: ignore[method-assign]
    w.cycle("p")
    after = {
        plural: {n: dict(b["metadata"]) for n, b in objs.items()} for plural, objs in w.api.objects.items()
    }
    assert {k: v for k, v in after.items() if k != "policies"} == {
        k: v for k, v in before.items() if k != "policies"
    }


def test_a_status_written_by_the_previous_release_is_carried_on() -> None:
    # Written by the release at 679f96c: its own cycle scaled 1 -> 4 at t0, then held on a missing metric.
    found = json.loads((Path(__file__).parent / "data" / "status-679f96c.json").read_text())
    w = FakeWorld()  # a new process: empty memory
    w.target(4)
    w.policy("p", found["spec"])
    w.api.objects["policies"]["p"]["status"] = found["status"]
    w.clock.now = 1_699_999_999.0  # its cycles here run 4 and 9 s after that release's scale step
    w.load(None)
    w.cycle("p")
    assert reasons(w) == []  # the hold and the bad condition were told already, by that release
    w.load(80)
    w.cycle("p")
    # its step 1 -> 4 still counts: within 15 s of it, the scale-up policies allow max(2 x 1, 1 + 4)
    assert w.replicas() == 5
    assert w.status("p")["targets"][0]["limitedBy"] == "scaleUpPolicy"


def test_two_targets_of_one_policy_on_one_workload_size_it_once() -> None:
    # The model cannot see this one: a worker's own Deployment named like another's generated one.
    w = FakeWorld()
    template = {"spec": {"containers": [{"name": "worker", "image": "app"}]}}
    spec = {
        "workers": [
            {"queue": "video", "template": template, "maxReplicas": 5, "tasksPerWorker": 10},
            {"queue": "mail", "deployment": "p-worker-video", "maxReplicas": 5, "tasksPerWorker": 1},
        ]
    }
    w.policy("p", spec)
    w.load(20)
    w.cycle("p")
    w.cycle("p")
    assert (
        w.api.objects["deployments"]["p-worker-video"]["spec"]["replicas"] == 2
    )  # video's 20 / 10, not 20 / 1
    status = w.status("p")
    assert condition(status, "Conflict")["reason"] == "TargetNamedTwice"
    assert status["targets"][1]["limitedBy"] == "conflict"
    assert "is also this policy's worker/video" in status["targets"][1]["reason"]


def test_a_worker_whose_deployment_the_api_server_refuses_holds_while_the_others_go_on() -> None:
    w = FakeWorld()
    w.target(1)
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "worker", "image": "app"}]}}
    spec = replicas_spec(
        workers=[{"queue": "video", "template": template, "maxReplicas": 5, "tasksPerWorker": 10}]
    )
    w.policy("p", spec)
    refusal = {
        "message": 'Deployment.apps "p-worker-video" is invalid',
        "details": {
            "causes": [{"field": "spec.template.spec.restartPolicy", "message": "Unsupported value"}]
        },
    }
    path = "/apis/apps/v1/namespaces/shop/deployments/p-worker-video"
    w.api.dry_run_answers[path] = (422, refusal)
    w.load(35)
    w.cycle("p")
    assert "p-worker-video" not in w.api.objects["deployments"]  # held: never created
    assert w.replicas() == 4  # the read replicas went on
    status = w.status("p")
    spec_valid = condition(status, "SpecValid")
    assert (spec_valid["status"], spec_valid["reason"]) == ("False", "RefusedByAPIServer")
    assert "spec.template.spec.restartPolicy: Unsupported value" in spec_valid["message"]
    assert condition(status, "Ready")["reason"] == "SpecRefused"
    assert status["verification"]["generation"] == 1
    # recorded in the status: a new process (restart, failover) does not dry-run this generation again
    w.memories.clear()
    w.cycle("p")
    assert w.api.dry_runs == [path]
    assert condition(w.status("p"), "SpecValid")["reason"] == "RefusedByAPIServer"


def test_a_dry_run_the_server_cannot_serve_is_not_a_refusal() -> None:
    w = FakeWorld()
    w.target(1)
    spec = {"web": {"deployment": "db", "maxReplicas": 8, "requestRate": {"query": "r", "perReplica": 10.0}}}
    w.policy("p", spec)
    webhook = {"message": 'admission webhook "audit.example" does not support dry run'}
    w.api.dry_run_answers["/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers/p-web"] = (
        400,
        webhook,
    )
    w.load(35)
    w.cycle("p")
    status = w.status("p")
    assert condition(status, "SpecValid")["status"] == "True"
    assert "not verified" in status["verification"]["unverified"][0]
    hpa = w.hpa("p-web")
    assert hpa is not None and hpa["spec"]["minReplicas"] == 4


def test_a_worker_deployment_the_api_server_refuses_to_create_is_told_with_its_field() -> None:
    w = FakeWorld()
    template = {"spec": {"containers": [{"name": "worker", "image": "app"}]}}
    w.policy(
        "p", {"workers": [{"queue": "video", "template": template, "maxReplicas": 5, "tasksPerWorker": 10}]}
    )
    refused = ApiException(status=422, reason="Unprocessable Entity")
    causes = [{"field": "spec.template.spec.containers[0].image", "message": "Required value"}]
    refused.body = json.dumps({"message": "Deployment.apps is invalid", "details": {"causes": causes}})

    def create(namespace: str, body: dict[str, object]) -> None:
        raise refused

    w.api.create_namespaced_deployment = create  # type: ignore[method-assign,assignment]
    w.load(5)
    w.cycle("p")
    ready = condition(w.status("p"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "TargetsUnavailable")
    assert (
        "cannot create its Deployment: spec.template.spec.containers[0].image: Required value"
        in ready["message"]
    )


def test_the_policy_gauges_follow_its_status_and_go_with_the_policy() -> None:
    """The dashboard's and the alert rules' per-policy view: MetricsAvailable, current and desired."""
    w = FakeWorld()
    w.target(3)
    w.policy("p", replicas_spec())

    def gauge() -> float | None:
        return w.metrics.registry.get_sample_value(
            "scalekeeper_metrics_available", {"namespace": "shop", "policy": "p"}
        )

    w.load(None)
    w.cycle("p")
    assert condition(w.status("p"), "MetricsAvailable")["status"] == "False" and gauge() == 0
    w.load(35)
    w.cycle("p")
    assert condition(w.status("p"), "MetricsAvailable")["status"] == "True" and gauge() == 1
    (told,) = w.status("p")["targets"]
    replicas = {"namespace": "shop", "policy": "p", "target": told["name"]}
    for name, field in (("current", "currentReplicas"), ("desired", "desiredReplicas")):
        assert w.metrics.registry.get_sample_value(f"scalekeeper_{name}_replicas", replicas) == told[field]
    w.metrics.forget_policy("shop", "p")
    assert gauge() is None
    assert w.metrics.registry.get_sample_value("scalekeeper_current_replicas", replicas) is None
