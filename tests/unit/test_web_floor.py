"""The web tier raises the Deployment to a new floor itself, after the HPA's minReplicas, and never lowers it.

On the fake API server, which records replica writes in order. The HPA controller is not simulated there, so
every /scale write seen is the operator's (on kind: tests/cycle_scenarios.py and test_demo_scaling.py).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from scalekeeper.tiers.web import raised_size
from tests.cycle_scenarios import condition
from tests.unit.fake_cluster import FakeWorld


def _web(max_replicas: int = 8, **extra: Any) -> dict[str, Any]:
    web = {
        "deployment": "db",
        "maxReplicas": max_replicas,
        "requestRate": {"query": "r", "perReplica": 10.0},
        "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": 10, "periodSeconds": 15}]}},
    }
    return {"web": web, **extra}


def scale_writes(w: FakeWorld) -> list[int]:
    return [value for kind, value in w.api.replica_writes if kind == "scale"]


def test_each_floor_rise_is_one_hpa_write_then_one_scale_write_and_a_steady_floor_writes_nothing() -> None:
    w = FakeWorld()
    w.target(1)
    w.policy("p", _web())
    w.load(35)
    w.cycle("p")
    assert w.api.replica_writes == [("hpa", 4), ("scale", 4)] and w.replicas() == 4
    for _ in range(3):  # the same load: neither the HPA nor the Deployment is written again
        w.cycle("p")
    w.load(62)
    w.cycle("p")
    assert w.api.replica_writes == [("hpa", 4), ("scale", 4), ("hpa", 7), ("scale", 7)] and w.replicas() == 7


def test_the_deployment_is_never_lowered_the_hpa_keeps_scale_down() -> None:
    w = FakeWorld()
    w.target(6)  # the HPA grew it on CPU, above the floor
    w.policy("p", _web())
    w.load(35)
    w.cycle("p")
    assert scale_writes(w) == [] and w.replicas() == 6
    w.load(5)
    w.clock.now += 600  # past the scale-down window: the floor comes down, the Deployment is left to the HPA
    w.cycle("p")
    hpa = w.hpa("p-web")
    assert hpa is not None and hpa["spec"]["minReplicas"] == 1
    assert scale_writes(w) == [] and w.replicas() == 6


def test_a_refused_hpa_write_raises_nothing() -> None:
    w = FakeWorld()
    w.target(1)
    w.policy("p", _web())
    w.cycle("p")  # creates the HPA at the floor of 1
    w.load(35)
    w.api.faults[("PUT", "HorizontalPodAutoscaler")] = [500]
    result = w.cycle("p")
    assert any("writing HPA p-web failed (500" in e for e in result.errors)
    assert scale_writes(w) == [] and w.replicas() == 1


def test_the_raise_is_capped_by_the_connection_budget() -> None:
    w = FakeWorld()
    w.target(1)
    budget = {"maxConnections": 50, "webPoolSize": 10, "workerPoolSize": 0}
    w.policy("p", _web(connectionBudget=budget))
    w.load(75)  # a floor of 8 wanted; 50 connections hold 5 web pods of 10
    w.cycle("p")
    assert scale_writes(w) == [5] and w.replicas() == 5


def test_a_deployment_resized_under_the_operator_is_not_overwritten_and_is_raised_next_cycle() -> None:
    w = FakeWorld()
    w.target(1)
    w.policy("p", _web())
    w.load(35)
    w.snapshot()  # the watch is behind: it still shows the Deployment at 1 ...
    w.resize(2)  # ... which another writer has just set to 2
    result = w.cycle("p")
    assert w.replicas() == 2 and not result.errors
    assert condition(w.status("p"), "Ready")["status"] == "True"
    w.seen = None
    w.cycle("p")
    assert w.replicas() == 4


@given(st.integers(0, 500), st.integers(1, 500), st.integers(1, 500), st.none() | st.integers(0, 500))
def test_a_raise_only_raises_and_never_past_a_cap(
    current: int, floor: int, max_replicas: int, by_budget: int | None
) -> None:
    size = raised_size(current, floor, max_replicas, by_budget)
    caps = [floor, max_replicas] + ([by_budget] if by_budget is not None else [])
    if size is None:
        assert min(caps) <= current
    else:
        assert current < size == min(caps)


def test_raised_size_by_hand() -> None:
    # (current, floor, maxReplicas, budget) -> size
    table = [((1, 4, 8, None), 4), ((4, 4, 8, None), None), ((6, 4, 8, None), None), ((1, 9, 8, None), 8)]
    table += [((1, 8, 8, 5), 5), ((5, 8, 8, 5), None), ((2, 3, 8, 0), None)]
    for args, size in table:
        assert raised_size(*args) == size, args
