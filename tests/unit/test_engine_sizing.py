"""Raw recommendations per tier (engine.sizing)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalekeeper.engine.sizing import (
    Reading,
    WorkerParams,
    ceil_replicas,
    ratio_replicas,
    read_metric,
    size_by_rate,
    size_worker,
)
from scalekeeper.engine.types import LimitedBy

MANY = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 50_000.0


def ok(value: float, label: str = "m") -> Reading:
    return Reading(label, value)


@pytest.mark.parametrize(
    ("sample", "problem"),
    [
        (None, "metric waiting for queue video is absent"),
        ((None, NOW), "metric waiting for queue video is absent"),
        (math.nan, "metric waiting for queue video is NaN"),
        ((math.inf, NOW), "metric waiting for queue video is infinite"),
        (-3.0, "metric waiting for queue video is negative (-3)"),
        ((5.0, NOW - 600), "metric waiting for queue video is stale (600s old, max age 120s)"),
        ("7", "metric waiting for queue video is not a number ('7')"),
        (True, "metric waiting for queue video is not a number (True)"),
    ],
)
def test_read_metric_names_the_metric_and_why(sample: object, problem: str) -> None:
    r = read_metric("metric waiting for queue video", sample, NOW, 120.0)  # type: ignore[arg-type]
    assert r.value is None
    assert r.problem == problem


def test_read_metric_accepts_fresh_values() -> None:
    assert read_metric("m", (4.0, NOW - 10), NOW, 120.0) == Reading("m", 4.0)
    assert read_metric("m", 0, NOW, 120.0) == Reading("m", 0.0)
    # No timestamp: nothing to be stale against.
    assert read_metric("m", 3.5, NOW, 120.0).value == 3.5


def test_ceil_ignores_float_noise_only() -> None:
    assert ceil_replicas(0.30000000000000004 / 0.1) == 3
    assert ceil_replicas(3.000001) == 4
    assert ceil_replicas(0.0) == 0
    assert ceil_replicas(1e-12) == 0


def test_ratio_replicas_tolerance_band_is_inclusive() -> None:
    # usage ratio exactly 1.1 and 0.9 are inside a 0.1 band, as in the v1.33+ controller.
    assert ratio_replicas(110.0, 10.0, 10, 0.1) == (10, True)
    assert ratio_replicas(90.0, 10.0, 10, 0.1) == (10, True)
    assert ratio_replicas(111.0, 10.0, 10, 0.1) == (12, False)
    assert ratio_replicas(89.0, 10.0, 10, 0.1) == (9, False)
    # From zero the ratio is infinite (or 0/0): always outside.
    assert ratio_replicas(5.0, 10.0, 0, 0.1) == (1, False)
    assert ratio_replicas(0.0, 10.0, 0, 0.1) == (0, False)


def test_size_by_rate_reason() -> None:
    p = size_by_rate(ok(430.0), 50.0, 4, 0.1, what="request rate", key="request_rate")
    assert p.replicas == 9
    assert p.reason == "request rate 430 at 50 per replica needs 9"
    assert p.metrics == {"request_rate": 430.0}
    missing = size_by_rate(
        Reading("metric load for readReplicas", None, "metric load for readReplicas is NaN"),
        5,
        2,
        0.1,
        what="load",
    )
    assert missing.replicas is None
    assert missing.missing == ("metric load for readReplicas is NaN",)


VIDEO = WorkerParams(
    queue="video", concurrency=4, prefetch_multiplier=2, tasks_per_worker=10, cooldown_seconds=300
)


def worker(
    params: WorkerParams,
    current: int,
    waiting: float | None,
    in_flight: float | None = 0.0,
    arrival: float | None = None,
    completion: float | None = None,
    idle_since: float | None = None,
    now: float = NOW,
    backlog_since: float | None = None,
) -> tuple[int | None, LimitedBy, str, float | None]:
    def reading(name: str, value: float | None) -> Reading:
        label = f"metric {name} for queue {params.queue}"
        return Reading(label, value, None if value is not None else f"{label} is NaN")

    s = size_worker(
        params,
        current,
        0.1,
        now,
        waiting=reading("waiting", waiting),
        in_flight=reading("in_flight", in_flight),
        arrival_rate=None if arrival is None else reading("arrival_rate", arrival),
        completion_rate=None if completion is None else reading("completion_rate", completion),
        idle_since=idle_since,
        backlog_since=backlog_since,
    )
    return s.proposal.replicas, s.proposal.limited_by, s.proposal.reason, s.idle_since


def test_worker_queue_estimate_counts_in_flight() -> None:
    replicas, _, reason, _ = worker(VIDEO, 3, waiting=100, in_flight=20)
    assert replicas == 12
    assert "load 120 at 10 tasks/worker needs 12" in reason


def test_worker_in_flight_is_bounded_by_what_workers_can_hold() -> None:
    # 3 pods x concurrency 4 x prefetch 2 = 24 tasks at most; 500 in flight is a stale series.
    replicas, *_ = worker(VIDEO, 3, waiting=0, in_flight=500)
    assert replicas == 3  # ceil(24 / 10)


def test_worker_drain_estimate() -> None:
    params = WorkerParams(
        queue="video", concurrency=2, prefetch_multiplier=1, tasks_per_worker=100, drain_seconds=60
    )
    # 4 workers complete 2 tasks/s while 150 wait (and tasks waited for the whole minute the rate
    # covers): 0.5 tasks/s each. Need 3/s arrival plus 160/60 s of backlog = 5.67/s -> 12 workers;
    # the queue estimate says only 2.
    replicas, _, reason, _ = worker(
        params, 4, waiting=150, in_flight=10, arrival=3.0, completion=2.0, backlog_since=NOW - 60
    )
    assert replicas == 12
    assert "draining in 60s at 0.5 tasks/s/worker needs 12" in reason


def test_worker_drain_rate_only_once_the_backlog_lasted_the_rate_window() -> None:
    params = WorkerParams(
        queue="video", concurrency=2, prefetch_multiplier=1, tasks_per_worker=100, drain_seconds=60
    )
    # Tasks wait only since 30 s: for half the minute the rate covers the workers may have idled,
    # so 2 tasks/s is what was asked of them, not what they can do. The queue estimate alone.
    replicas, _, reason, _ = worker(
        params, 4, waiting=150, in_flight=10, arrival=3.0, completion=2.0, backlog_since=NOW - 30
    )
    assert replicas == 4 and "draining" not in reason
    # A first backlog starts the clock; no waiting task stops it.
    s = size_worker(params, 4, 0.1, NOW, waiting=ok(5), in_flight=ok(8))
    assert s.backlog_since == NOW
    s = size_worker(params, 4, 0.1, NOW + 5, waiting=ok(5), in_flight=ok(8), backlog_since=NOW)
    assert s.backlog_since == NOW
    s = size_worker(params, 4, 0.1, NOW + 10, waiting=ok(0), in_flight=ok(8), backlog_since=NOW)
    assert s.backlog_since is None


def test_worker_drain_rate_not_measured_on_idle_workers() -> None:
    params = WorkerParams(queue="video", tasks_per_worker=100, drain_seconds=60)
    # Nothing waits: the workers are not saturated, so their throughput says nothing about
    # their capacity; only the queue estimate is used.
    replicas, _, reason, _ = worker(params, 4, waiting=0, in_flight=3, arrival=0.2, completion=0.2)
    assert replicas == 1
    assert "draining" not in reason


def test_worker_activation_from_zero() -> None:
    params = WorkerParams(queue="video", tasks_per_worker=10, activation_tasks=5)
    replicas, limited_by, reason, _ = worker(params, 0, waiting=4)
    assert (replicas, limited_by) == (0, LimitedBy.ACTIVATION)
    assert reason == "queue video: load 4 is below activation 5; staying at 0"
    replicas, limited_by, _, _ = worker(params, 0, waiting=5)
    assert (replicas, limited_by) == (1, LimitedBy.NONE)


def test_worker_to_zero_only_after_cooldown() -> None:
    replicas, limited_by, reason, idle = worker(VIDEO, 2, waiting=0, in_flight=0)
    assert (replicas, limited_by, idle) == (1, LimitedBy.COOLDOWN, NOW)
    assert "backlog empty for 0s of the 300s cooldown" in reason
    replicas, limited_by, _, idle = worker(VIDEO, 1, waiting=0, in_flight=0, idle_since=NOW, now=NOW + 299)
    assert (replicas, limited_by, idle) == (1, LimitedBy.COOLDOWN, NOW)
    replicas, limited_by, _, idle = worker(VIDEO, 1, waiting=0, in_flight=0, idle_since=NOW, now=NOW + 300)
    assert (replicas, idle) == (0, NOW)
    # Any backlog resets the clock.
    _, _, _, idle = worker(VIDEO, 1, waiting=1, in_flight=0, idle_since=NOW, now=NOW + 100)
    assert idle is None


def test_worker_missing_metric_is_named() -> None:
    replicas, _, reason, idle = worker(VIDEO, 3, waiting=None, idle_since=NOW - 10)
    assert replicas is None
    assert reason == "queue video: metric waiting for queue video is NaN"
    assert idle == NOW - 10  # unknown backlog neither starts nor resets the idle clock


@st.composite
def worker_params(draw: st.DrawFn) -> WorkerParams:
    tpw = draw(st.one_of(st.none(), st.integers(1, 50)))
    drain = draw(st.one_of(st.none(), st.integers(1, 600))) if tpw is not None else draw(st.integers(1, 600))
    return WorkerParams(
        queue="q",
        concurrency=draw(st.integers(1, 8)),
        prefetch_multiplier=draw(st.integers(1, 8)),
        tasks_per_worker=None if tpw is None else float(tpw),
        drain_seconds=None if drain is None else float(drain),
        activation_tasks=float(draw(st.integers(1, 20))),
        cooldown_seconds=float(draw(st.sampled_from([0, 60, 300]))),
    )


loads = st.floats(0, 5000, allow_nan=False)


@MANY
@given(
    worker_params(),
    st.integers(0, 40),
    st.sampled_from([0.0, 0.1, 0.3]),
    st.tuples(loads, loads),
    st.tuples(loads, loads),
    st.tuples(st.floats(0, 100), st.floats(0, 100)),
    st.floats(0, 100),
    st.one_of(st.none(), st.floats(NOW - 1000, NOW)),
    st.one_of(st.none(), st.floats(NOW - 1000, NOW)),
)
def test_worker_more_load_never_fewer_replicas(
    params: WorkerParams,
    current: int,
    tolerance: float,
    waiting: tuple[float, float],
    in_flight: tuple[float, float],
    arrival: tuple[float, float],
    completion: float,
    idle_since: float | None,
    backlog_since: float | None,
) -> None:
    def size(w: float, f: float, a: float) -> int:
        s = size_worker(
            params,
            current,
            tolerance,
            NOW,
            waiting=ok(w),
            in_flight=ok(f),
            arrival_rate=ok(a),
            completion_rate=ok(completion),
            idle_since=idle_since,
            backlog_since=backlog_since,
        )
        assert s.proposal.replicas is not None
        return s.proposal.replicas

    lo = size(min(waiting), min(in_flight), min(arrival))
    hi = size(max(waiting), max(in_flight), max(arrival))
    assert lo <= hi
    assert size(min(waiting), min(in_flight), min(arrival)) == lo  # deterministic


def test_workers_full_of_in_flight_tasks_are_not_sized_away() -> None:
    # 4 workers x 2 slots x prefetch 1, all full, nothing waiting: tasksPerWorker 4 alone would say 2.
    params = WorkerParams(queue="video", concurrency=2, prefetch_multiplier=1, tasks_per_worker=4)
    replicas, _, reason, _ = worker(params, 4, waiting=0, in_flight=8)
    assert replicas == 4
    assert "8 in flight fill 4 workers" in reason
    # Slots free up: the floor follows the tasks still in flight.
    assert worker(params, 4, waiting=0, in_flight=5)[0] == 3


@MANY
@given(worker_params(), st.integers(1, 40), loads, loads)
def test_worker_never_below_the_workers_its_in_flight_tasks_fill(
    params: WorkerParams, current: int, waiting: float, in_flight: float
) -> None:
    s = size_worker(params, current, 0.1, NOW, waiting=ok(waiting), in_flight=ok(in_flight))
    capacity = params.concurrency * params.prefetch_multiplier
    held = min(in_flight, current * capacity)
    assert s.proposal.replicas is not None and s.proposal.replicas >= math.ceil(held / capacity - 1e-9)


def test_worker_drain_rate_is_per_ready_worker() -> None:
    params = WorkerParams(
        queue="video", concurrency=2, prefetch_multiplier=1, tasks_per_worker=100, drain_seconds=60
    )
    # 4 replicas, 2 of them still starting: the 2 ready ones complete 2 tasks/s, 1 each.
    s = size_worker(
        params,
        4,
        0.1,
        NOW,
        waiting=ok(150),
        in_flight=ok(4),
        arrival_rate=ok(3.0),
        completion_rate=ok(2.0),
        ready=2,
        backlog_since=NOW - 60,
    )
    assert s.proposal.metrics["per_worker_rate"] == 1.0
    # 3/s + 154/60 s = 5.57/s at 1/s per worker: 6 (the replica count alone would say 0.5/s and 12).
    assert s.proposal.replicas == 6
    assert "draining in 60s at 1 tasks/s/worker needs 6" in s.proposal.reason


# Per-worker rates that are exact binary fractions, so completion / ready == rate exactly.
worker_rates = st.integers(1, 64).map(lambda k: k / 16)


@MANY
@given(
    st.integers(1, 600),
    st.integers(1, 20),
    st.integers(0, 20),
    worker_rates,
    st.floats(0, 50),
    st.floats(0.5, 5000),
)
def test_pods_still_starting_do_not_inflate_the_drain_estimate(
    drain_seconds: int, ready: int, starting: int, rate: float, arrival: float, waiting: float
) -> None:
    """The drain estimate asks for what the ready workers' speed needs, whatever number of pods is
    still starting: dividing the completion rate by all replicas would make each look slower."""
    # tasksPerWorker so large that the queue estimate is 1, nothing in flight: the drain estimate decides.
    params = WorkerParams(queue="q", concurrency=2, tasks_per_worker=1e12, drain_seconds=float(drain_seconds))
    s = size_worker(
        params,
        ready + starting,
        0.0,
        NOW,
        waiting=ok(waiting),
        in_flight=ok(0.0),
        arrival_rate=ok(arrival),
        completion_rate=ok(ready * rate),
        ready=ready,
        backlog_since=NOW - params.rate_window_seconds,
    )
    assert s.proposal.metrics["per_worker_rate"] == rate
    need = (arrival + waiting / drain_seconds) / rate
    assert s.proposal.replicas == max(1, ceil_replicas(need))
