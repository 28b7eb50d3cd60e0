"""Busy-worker protection through whole cycles on the fake API server: before a worker Deployment is
lowered, its pods' deletion costs are set from their executing tasks and the replicas are lowered only once
the pod watch shows them; without per-pod data, or when a pod refuses the patch, the scale-down goes ahead,
told as unprotected. (On kind: tests/cluster/test_celery_app.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from scalekeeper.kube.pods import DELETION_COST, WorkerPod, pod_entry, pods_key
from scalekeeper.kube.watched import Watched
from scalekeeper.tiers.workers import PROTECTION_WAIT_SECONDS
from tests.unit.fake_cluster import FakeWorld

HASH = "5d8f7c"
PODS = ("w-5d8f7c-aaaaa", "w-5d8f7c-bbbbb", "w-5d8f7c-ccccc", "w-5d8f7c-ddddd")


def pod_body(
    name: str, *, ready: bool = True, cost: str | None = None, owner: str = f"w-{HASH}"
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "shop",
        "labels": {"app": "w", "pod-template-hash": HASH},
        "ownerReferences": [{"kind": "ReplicaSet", "name": owner, "controller": True}],
    }
    if cost is not None:
        meta["annotations"] = {DELETION_COST: cost}
    status = "True" if ready else "False"
    return {"metadata": meta, "status": {"conditions": [{"type": "Ready", "status": status}]}}


def test_a_pod_is_indexed_under_the_deployment_that_owns_its_replicaset() -> None:
    assert pod_entry(pod_body("w-5d8f7c-aaaaa", cost="3")) == {
        pods_key("shop", "w"): WorkerPod("w-5d8f7c-aaaaa", "3", ready=True)
    }
    # A Deployment named with dashes and a hash-like part: only the template hash is cut off.
    assert list(pod_entry(pod_body("a-b-1-5d8f7c-x", owner=f"a-b-1-{HASH}"))) == [pods_key("shop", "a-b-1")]
    deleting = pod_body("w-5d8f7c-aaaaa")
    deleting["metadata"]["deletionTimestamp"] = "2026-12-05T00:00:00Z"
    assert pod_entry(deleting)[pods_key("shop", "w")].ready is False
    # Not a Deployment's pod: a StatefulSet's, a bare pod, a ReplicaSet of another hash.
    sts = pod_body("db-0")
    sts["metadata"]["ownerReferences"] = [{"kind": "StatefulSet", "name": "db", "controller": True}]
    assert pod_entry(sts) == {}
    assert pod_entry({"metadata": {"name": "bare", "namespace": "shop"}}) == {}
    assert pod_entry(pod_body("x", owner="other-123")) == {}


@pytest.fixture
def world() -> FakeWorld:
    w = FakeWorld()
    w.api.put(
        "deployments", {"metadata": {"name": "w"}, "spec": {"replicas": 4}, "status": {"readyReplicas": 4}}
    )
    for name in PODS:
        w.api.put("pods", pod_body(name))
    w.policy(
        "shop",
        {
            "workers": [
                {
                    "queue": "q",
                    "deployment": "w",
                    "minReplicas": 1,
                    "maxReplicas": 6,
                    "tasksPerWorker": 1,
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
                        }
                    },
                }
            ]
        },
    )
    w.load(1.0)  # waiting 1 + in flight 1: 2 workers
    return w


def costs(world: FakeWorld) -> dict[str, str | None]:
    return {
        name: (body["metadata"].get("annotations") or {}).get(DELETION_COST)
        for name, body in world.api.objects["pods"].items()
    }


def replicas_of_w(world: FakeWorld) -> int:
    return int(world.api.objects["deployments"]["w"]["spec"]["replicas"])


def condition(world: FakeWorld, type_: str) -> dict[str, Any]:
    return next(c for c in world.status("shop")["conditions"] if c["type"] == type_)


def reasons(world: FakeWorld) -> list[str]:
    return [reason for _, reason, _ in world.events]


def test_costs_first_then_the_scale_down_once_the_watch_shows_them(world: FakeWorld) -> None:
    world.prometheus.per_label = {PODS[0]: 2.0, PODS[2]: 1.0, PODS[1]: 0.0, PODS[3]: 0.0, "other-pod": 5.0}
    world.cycle("shop")
    assert costs(world) == {PODS[0]: "2", PODS[1]: None, PODS[2]: "1", PODS[3]: None}
    assert replicas_of_w(world) == 4, "lowered before the costs were seen"
    assert "ProtectingBusyWorkers" in reasons(world) and "Scaled" not in reasons(world)

    world.cycle("shop")  # the watch (the fake's, read at each cycle) shows them now
    assert replicas_of_w(world) == 2
    assert "Scaled" in reasons(world) and "ScaleDownUnprotected" not in reasons(world)
    assert condition(world, "BusyWorkersProtected")["status"] == "True"


def test_stale_costs_are_rewritten_and_current_ones_left_alone(world: FakeWorld) -> None:
    world.api.objects["pods"][PODS[1]]["metadata"]["annotations"] = {DELETION_COST: "7"}
    world.api.objects["pods"][PODS[0]]["metadata"]["annotations"] = {DELETION_COST: "2"}
    world.prometheus.per_label = dict.fromkeys(PODS, 0.0) | {PODS[0]: 2.0}
    world.cycle("shop")
    assert costs(world) == {PODS[0]: "2", PODS[1]: "0", PODS[2]: None, PODS[3]: None}
    assert replicas_of_w(world) == 4
    world.cycle("shop")
    assert replicas_of_w(world) == 2


def test_costs_already_in_place_lower_at_once(world: FakeWorld) -> None:
    world.prometheus.per_label = dict.fromkeys(PODS, 0.0)
    world.cycle("shop")
    assert replicas_of_w(world) == 2 and "ProtectingBusyWorkers" not in reasons(world)


def test_a_pod_not_ready_needs_no_count(world: FakeWorld) -> None:
    world.api.objects["pods"][PODS[3]]["status"]["conditions"][0]["status"] = "False"
    world.prometheus.per_label = {PODS[0]: 1.0, PODS[1]: 0.0, PODS[2]: 0.0}
    world.cycle("shop")
    world.cycle("shop")
    assert replicas_of_w(world) == 2 and "ScaleDownUnprotected" not in reasons(world)


@pytest.mark.parametrize(
    ("per_label", "fault", "why"),
    [
        (None, None, "tasks executing per pod unreadable: Prometheus at stand-in is unreachable"),
        ({PODS[0]: 1.0, PODS[1]: 0.0}, None, f"no executing count for pods {PODS[2]}, {PODS[3]}"),
        (
            {PODS[0]: 1.0, PODS[1]: 0.0, PODS[2]: 0.0, PODS[3]: 0.0},
            403,
            f"pod {PODS[0]} refused its deletion cost",
        ),
    ],
)
def test_without_data_or_with_a_refusal_it_scales_down_unprotected_and_says_so(
    world: FakeWorld, per_label: dict[str, float] | None, fault: int | None, why: str
) -> None:
    world.prometheus.per_label = per_label
    if fault is not None:
        world.api.faults[("PATCH", "Pod")] = [fault]
    world.cycle("shop")
    assert replicas_of_w(world) == 2, "a scale-down must not wait for data it cannot get"
    warnings = [m for t, r, m in world.events if t == "Warning" and r == "ScaleDownUnprotected"]
    assert len(warnings) >= 1 and why in warnings[0], warnings
    assert warnings[0].startswith("Lowering Deployment w without busy-worker protection: ")
    protected = condition(world, "BusyWorkersProtected")
    assert protected["status"] == "False" and why in protected["message"]

    # The next protected scale-down clears it.
    world.prometheus.per_label = dict.fromkeys(PODS, 0.0)
    world.api.objects["deployments"]["w"]["spec"]["replicas"] = 4
    world.api._bump(world.api.objects["deployments"]["w"])
    world.cycle("shop")
    assert replicas_of_w(world) == 2
    assert condition(world, "BusyWorkersProtected")["status"] == "True"


def test_a_watch_that_never_shows_the_costs_lets_the_scale_down_go_ahead(world: FakeWorld) -> None:
    world.prometheus.per_label = dict.fromkeys(PODS, 0.0) | {PODS[0]: 3.0}
    before = world.api.watched().pods  # the pods as the watch saw them before the costs were written
    world.cycle("shop")
    assert replicas_of_w(world) == 4
    cycles = 1
    while replicas_of_w(world) == 4:
        # The Deployment is seen moving on; its pods, never again.
        fresh = world.api.watched()
        world.seen = Watched(fresh.replicas, fresh.hpas, True, pods=before, pods_watched=True)
        world.cycle("shop")
        cycles += 1
        assert cycles * 5 <= PROTECTION_WAIT_SECONDS + 10
    assert cycles * 5 > PROTECTION_WAIT_SECONDS
    assert any(
        "did not show the deletion costs" in m for _, r, m in world.events if r == "ScaleDownUnprotected"
    )


def test_off_it_lowers_at_once_and_tells_nothing(world: FakeWorld) -> None:
    body = world.api.objects["policies"]["shop"]
    body["spec"]["workers"][0]["protectBusyWorkers"] = False
    body["metadata"]["generation"] = 2
    world.prometheus.per_label = None
    world.cycle("shop")
    assert replicas_of_w(world) == 2 and costs(world) == dict.fromkeys(PODS)
    assert not any(c["type"] == "BusyWorkersProtected" for c in world.status("shop")["conditions"])
