"""A worker sized to its wait objective (engine.sizing with targetWaitSeconds): hand-worked answers, what
happens before a runtime is read, how the objective meets the other estimates, and its properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalekeeper.engine.sizing import Reading, WorkerParams, WorkerSizing, read_metric, size_worker
from scalekeeper.engine.types import LimitedBy

NOW = 50_000.0
PROPERTIES = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def objective(**over: float | int | None) -> WorkerParams:
    base: dict[str, object] = {
        "queue": "video",
        "concurrency": 1,
        "prefetch_multiplier": 4,
        "target_wait_seconds": 1.0,
        "max_replicas": 50,
    }
    base.update(over)
    return WorkerParams(**base)  # type: ignore[arg-type]


def sized(
    params: WorkerParams,
    current: int,
    *,
    waiting: float = 0.0,
    in_flight: float = 0.0,
    arrival: float | None = 1.0,
    runtime: float | None = 1.0,
    scv: float | None = 1.0,
) -> WorkerSizing:
    def read(label: str, value: float | None) -> Reading:
        if value is None or math.isnan(value):
            return Reading(label, None, f"{label} is {'NaN' if value is not None else 'absent'}")
        return Reading(label, value)

    return size_worker(
        params,
        current,
        0.1,
        NOW,
        waiting=Reading("waiting", waiting),
        in_flight=Reading("in_flight", in_flight),
        arrival_rate=read("arrival rate", arrival),
        service_seconds=read("runtime", runtime),
        service_scv=read("runtime scv", scv),
    )


# Worked by hand (tests/unit/test_engine_wait.py has the Erlang C values): one task a second, 1 s runtimes,
# exponential (scv 1). p95 wait with 2 servers 1.897 s, with 3 servers 0.299 s, with 4 servers 0.
HAND_WORKED = [
    # (params, current, in_flight, arrival, runtime, scv, desired)
    (objective(target_wait_seconds=1.0), 3, 0.0, 1.0, 1.0, 1.0, 3),
    (objective(target_wait_seconds=2.0), 3, 0.0, 1.0, 1.0, 1.0, 2),
    # scv 3 doubles the wait: 2 servers 3.79 s, 3 servers 0.60 s.
    (objective(target_wait_seconds=2.0), 3, 0.0, 1.0, 1.0, 3.0, 3),
    # scv 0 (fixed runtimes) halves it: 2 servers 0.95 s.
    (objective(target_wait_seconds=1.0), 3, 0.0, 1.0, 1.0, 0.0, 2),
    # Two processes a pod: 4 servers in 2 pods (p95 wait 0).
    (objective(target_wait_seconds=0.1, concurrency=2), 3, 0.0, 1.0, 1.0, 1.0, 2),
    # Five tasks in flight, none arriving: 1 pod starts the last of them within 4 s; the busy-worker floor
    # (5 in flight fill 2 pods of 4) wins.
    (objective(target_wait_seconds=10.0), 2, 5.0, 0.0, 1.0, 1.0, 2),
]


@pytest.mark.parametrize(
    ("params", "current", "in_flight", "arrival", "runtime", "scv", "desired"), HAND_WORKED
)
def test_the_objective_by_hand(
    params: WorkerParams,
    current: int,
    in_flight: float,
    arrival: float,
    runtime: float,
    scv: float,
    desired: int,
) -> None:
    s = sized(params, current, in_flight=in_flight, arrival=arrival, runtime=runtime, scv=scv)
    assert s.proposal.replicas == desired, s.proposal.reason
    assert s.proposal.missing == ()


def test_the_reason_names_the_objective_and_its_inputs() -> None:
    s = sized(objective(target_wait_seconds=1.0), 2)
    assert s.proposal.reason == "queue video: p95 wait 1s at 1 tasks/s, 1s runtime (scv 1) needs 3"


def test_alone_it_sizes_below_what_a_pod_holds() -> None:
    # 6 tasks in the system at 40 tasks/s of 0.01 s runtimes: the objective asks for 1 pod, where the
    # fallback queue estimate (concurrency x prefetch = 4 a pod) would ask for 2.
    s = sized(objective(), 1, waiting=2.0, in_flight=4.0, arrival=40.0, runtime=0.01, scv=1.0)
    assert s.proposal.replicas == 1, s.proposal.reason
    assert "tasks/worker" not in s.proposal.reason


def test_without_a_runtime_the_other_estimates_size_and_say_why() -> None:
    s = sized(objective(), 1, waiting=10.0, runtime=None, scv=None)
    assert s.proposal.replicas == 3  # 10 tasks at concurrency x prefetch = 4 a pod
    assert s.proposal.reason == (
        "queue video: p95 wait 1s: no task runtime read yet; load 10 at 4 tasks/worker needs 3"
    )
    # No runtime read is not a fault: scale-down is not blocked by it.
    assert s.proposal.missing == ()
    idle = sized(objective(), 3, runtime=math.nan, scv=math.nan)
    assert idle.proposal.replicas == 1 and idle.proposal.limited_by is LimitedBy.COOLDOWN


def test_from_zero_with_tasks_waiting_and_no_runtime_it_starts_workers() -> None:
    s = sized(objective(), 0, waiting=5.0, arrival=0.0, runtime=None, scv=None)
    assert s.proposal.replicas == 2


def test_a_variance_not_read_is_taken_as_exponential_and_said() -> None:
    s = sized(objective(target_wait_seconds=1.0), 2, scv=None)
    assert s.proposal.replicas == 3
    assert "(scv 1, not read: taken as exponential)" in s.proposal.reason


def test_a_bad_arrival_rate_blocks_scale_down() -> None:
    s = sized(objective(), 5, waiting=10.0, arrival=math.nan)
    assert s.proposal.missing == ("arrival rate is NaN",)
    assert "no arrival rate read" in s.proposal.reason


def test_no_arrival_series_yet_is_not_a_fault() -> None:
    # A queue no task was ever sent to has no published counter: the other estimates size, scale-down too.
    s = size_worker(
        objective(),
        3,
        0.1,
        NOW,
        waiting=Reading("waiting", 0.0),
        in_flight=Reading("in_flight", 0.0),
        arrival_rate=read_metric("arrival rate", None, NOW, 60.0),
        service_seconds=read_metric("runtime", None, NOW, 60.0),
        service_scv=read_metric("runtime scv", None, NOW, 60.0),
        idle_since=NOW - 400,
    )
    assert s.proposal.missing == () and s.proposal.replicas == 0, s.proposal
    assert "no task runtime read yet" in s.proposal.reason


def test_with_tasks_per_worker_the_largest_estimate_wins() -> None:
    # The objective asks for 3; 40 tasks at 5 a worker ask for 8.
    s = sized(objective(tasks_per_worker=5.0), 3, waiting=40.0, runtime=0.01)
    assert s.proposal.replicas == 8
    assert "p95 wait" in s.proposal.reason and "load 40 at 5 tasks/worker needs 8" in s.proposal.reason
    # And the other way round: a long runtime makes the objective the larger.
    s = sized(objective(tasks_per_worker=50.0), 3, waiting=4.0, arrival=2.0, runtime=3.0)
    assert s.proposal.replicas > 1 and "needs 1" in s.proposal.reason


def test_the_objective_stops_at_max_replicas() -> None:
    s = sized(objective(max_replicas=4), 4, arrival=100.0, runtime=1.0)
    assert s.proposal.replicas == 4


def test_a_load_beyond_the_model_gets_the_stability_bound() -> None:
    s = sized(objective(max_replicas=2**31 - 1), 4, arrival=1e9, runtime=10.0)
    assert s.proposal.replicas == 10**10 + 1 or s.proposal.replicas == 2**31 - 1
    assert "beyond the model's range" in s.proposal.reason


loads = st.floats(0, 200)
rates = st.floats(0, 50)
runtimes = st.floats(0.01, 30)
scvs = st.floats(0, 8)


@PROPERTIES
@given(loads, loads, rates, runtimes, scvs, st.integers(0, 20), st.floats(0.1, 2))
def test_monotone_in_arrival_rate_and_runtime(
    waiting: float, in_flight: float, arrival: float, runtime: float, scv: float, current: int, more: float
) -> None:
    params = objective(target_wait_seconds=5.0, max_replicas=10_000)
    base = sized(
        params, current, waiting=waiting, in_flight=in_flight, arrival=arrival, runtime=runtime, scv=scv
    )
    busier = sized(
        params,
        current,
        waiting=waiting,
        in_flight=in_flight,
        arrival=arrival + more,
        runtime=runtime,
        scv=scv,
    )
    slower = sized(
        params,
        current,
        waiting=waiting,
        in_flight=in_flight,
        arrival=arrival,
        runtime=runtime + more,
        scv=scv,
    )
    assert base.proposal.replicas is not None
    assert busier.proposal.replicas is not None and busier.proposal.replicas >= base.proposal.replicas
    assert slower.proposal.replicas is not None and slower.proposal.replicas >= base.proposal.replicas


@PROPERTIES
@given(loads, loads, rates, runtimes, scvs, st.integers(0, 20))
def test_never_below_the_busy_workers_nor_at_zero_with_work(
    waiting: float, in_flight: float, arrival: float, runtime: float, scv: float, current: int
) -> None:
    params = objective(target_wait_seconds=5.0, max_replicas=10_000)
    s = sized(
        params, current, waiting=waiting, in_flight=in_flight, arrival=arrival, runtime=runtime, scv=scv
    )
    assert s.proposal.replicas is not None
    held = min(in_flight, current * params.concurrency * params.prefetch_multiplier)
    assert s.proposal.replicas >= math.ceil(held / (params.concurrency * params.prefetch_multiplier) - 1e-9)
    if waiting + held >= params.activation_tasks:
        assert s.proposal.replicas >= 1
