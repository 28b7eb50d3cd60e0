"""The wait objective's model (engine/wait.py): Erlang C and its Allen-Cunneen correction against hand-worked
cases, and the pod count's properties: minimal, within bounds, monotone in the load and the objective."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalekeeper.engine.wait import BACKLOG_SHARE, WaitInputs, erlang_c, predicted_wait, wait_replicas


def inputs(**over: float) -> WaitInputs:
    base = {
        "arrival_rate": 1.0,
        "mean_service_seconds": 1.0,
        "service_scv": 1.0,
        "in_system": 0.0,
        "concurrency": 1,
        "target_wait_seconds": 1.0,
        "quantile": 0.95,
    }
    base.update(over)
    return WaitInputs(**base)  # type: ignore[arg-type]


# Worked by hand from the Erlang C formula, a = lambda / mu = 1:
#   m = 2: C = (a^2/2! * 2/(2-1)) / (1 + 1 + 1) = 1/3;      p95 wait = ln((1/3) / 0.05) / (2 - 1) = 1.8971 s
#   m = 3: C = (a^3/3! * 3/(3-1)) / (1 + 1 + 1/2 + 1/4) = 1/11;  p95 = ln((1/11) / 0.05) / (3 - 1) = 0.2993 s
#   m = 4: C = (1/24 * 4/3) / (1 + 1 + 1/2 + 1/6 + 1/18) = 1/49 < 0.05: p95 wait 0
@pytest.mark.parametrize(("servers", "probability"), [(1, 1.0), (2, 1 / 3), (3, 1 / 11), (4, 1 / 49)])
def test_erlang_c_by_hand(servers: int, probability: float) -> None:
    assert erlang_c(servers, 1.0) == pytest.approx(probability)


@pytest.mark.parametrize(
    ("servers", "scv", "wait"),
    [
        (2, 1.0, math.log(20 / 3)),
        (3, 1.0, math.log(20 / 11) / 2),
        (4, 1.0, 0.0),
        # Heavier-tailed runtimes (cs^2 = 3): Allen-Cunneen doubles the wait.
        (2, 3.0, 2 * math.log(20 / 3)),
        (3, 3.0, math.log(20 / 11)),
        # Deterministic runtimes (cs^2 = 0) halve it.
        (2, 0.0, math.log(20 / 3) / 2),
    ],
)
def test_predicted_p95_wait_by_hand(servers: int, scv: float, wait: float) -> None:
    assert predicted_wait(servers, inputs(service_scv=scv)) == pytest.approx(wait)


@pytest.mark.parametrize(
    ("over", "floor", "pods"),
    [
        ({"target_wait_seconds": 2.0}, 0, 2),  # 1.90 s <= 2
        ({"target_wait_seconds": 1.0}, 0, 3),  # 0.30 s
        ({"target_wait_seconds": 0.1}, 0, 4),  # 0
        ({"target_wait_seconds": 1.0, "service_scv": 3.0}, 0, 3),  # 0.60 s
        ({"target_wait_seconds": 0.5, "service_scv": 3.0}, 0, 4),
        # Two processes a pod: 4 servers in 2 pods.
        ({"target_wait_seconds": 0.1, "concurrency": 2}, 0, 2),
        # 10 in the system (running or waiting): the last queued starts after (10 - m) / m s, which
        # must be within half the target (BACKLOG_SHARE): <= 1 s from m = 5 (m = 4: 1.5 s).
        ({"target_wait_seconds": 2.0, "in_system": 10.0}, 0, 5),
        # A target of 4 s lets them take 2 s: 1.5 s at m = 4, m = 3 takes 2.33 s.
        ({"target_wait_seconds": 4.0, "in_system": 10.0}, 0, 4),
        # The busy-worker floor wins over a lighter need.
        ({"target_wait_seconds": 2.0}, 5, 5),
        # Nothing arriving, nothing in the system: zero pods meet any objective.
        ({"arrival_rate": 0.0}, 0, 0),
    ],
)
def test_pods_by_hand(over: dict[str, float], floor: int, pods: int) -> None:
    assert wait_replicas(inputs(**over), floor, 100) == pods


def test_an_unreachable_objective_asks_for_the_ceiling() -> None:
    assert wait_replicas(inputs(arrival_rate=1000.0), 0, 10) == 10


loads = st.fixed_dictionaries(
    {
        "arrival_rate": st.floats(0, 500),
        "mean_service_seconds": st.floats(0.01, 600),
        "service_scv": st.floats(0, 20),
        "in_system": st.floats(0, 5000),
        "concurrency": st.integers(1, 16),
        "target_wait_seconds": st.floats(0.1, 3600),
        "quantile": st.sampled_from([0.5, 0.9, 0.95, 0.99]),
    }
)
CEILING = 2000


@given(loads, st.integers(0, 50))
def test_the_answer_is_the_fewest_pods_that_meet_the_objective(load: dict[str, float], floor: int) -> None:
    i = WaitInputs(**load)  # type: ignore[arg-type]
    pods = wait_replicas(i, floor, CEILING)
    assert floor <= pods <= CEILING
    if pods < CEILING and pods > 0:
        assert predicted_wait(pods * i.concurrency, i) <= i.target_wait_seconds
    if pods > max(floor, 1):
        assert predicted_wait((pods - 1) * i.concurrency, i) > i.target_wait_seconds


@given(loads)
def test_the_tasks_queued_clear_within_the_backlog_share_of_the_target(load: dict[str, float]) -> None:
    i = WaitInputs(**load)  # type: ignore[arg-type]
    pods = wait_replicas(i, 0, CEILING)
    if 0 < pods < CEILING:
        servers = pods * i.concurrency
        clear = max(0.0, i.in_system - servers) * i.mean_service_seconds / servers
        assert clear <= BACKLOG_SHARE * i.target_wait_seconds * (1 + 1e-9)


@given(
    loads,
    st.sampled_from(["arrival_rate", "mean_service_seconds", "service_scv", "in_system"]),
    st.floats(1, 4),
)
def test_more_load_never_asks_for_fewer_pods(load: dict[str, float], field: str, factor: float) -> None:
    more = {**load, field: load[field] * factor}
    assert wait_replicas(WaitInputs(**more), 0, CEILING) >= wait_replicas(WaitInputs(**load), 0, CEILING)  # type: ignore[arg-type]


@given(loads, st.floats(1, 4))
def test_a_looser_objective_never_asks_for_more_pods(load: dict[str, float], factor: float) -> None:
    looser = {**load, "target_wait_seconds": load["target_wait_seconds"] * factor}
    assert wait_replicas(WaitInputs(**looser), 0, CEILING) <= wait_replicas(WaitInputs(**load), 0, CEILING)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("over", "message"),
    [
        ({"mean_service_seconds": 0.0}, "mean service time"),
        ({"quantile": 1.0}, "quantile"),
        ({"concurrency": 0}, "concurrency"),
        ({"arrival_rate": math.nan}, "arrival_rate"),
        ({"in_system": -1.0}, "in_system"),
    ],
)
def test_bad_inputs_are_refused_naming_them(over: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        inputs(**over)
