"""bench.loadtest's pure parts: the load as t:rps points and the users that offer it
(manifests/examples/loadtest/shape.py, the locustfile's half without locust), one interval's percentiles
over its own requests, the interval lines and the figures of a run, and the command line's bad input."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.common import ROOT
from bench.common import percentile as bench_percentile
from bench.loadtest import cli
from bench.loadtest import report as R

S = cli.load_shape()
RAMP = S.ramp_points(6.0, 10.0, 60.0, 180.0)


@pytest.mark.parametrize(
    ("t", "rps"),
    [(0, 6.0), (10, 15.0), (30, 33.0), (59.999, pytest.approx(60.0, abs=0.01)), (60, 60.0), (239, 60.0)],
)
def test_the_ramp_rises_linearly_from_1x_to_10x_then_holds(t: float, rps: float) -> None:
    assert S.rate_at(RAMP, t) == rps


def test_the_run_is_over_at_the_last_point() -> None:
    assert S.rate_at(RAMP, 240.0) is None and S.rate_at(RAMP, -1.0) is None


def test_two_points_at_one_time_make_a_step() -> None:
    points = S.parse_points("0:2,30:2,30:4,60:4")
    assert [S.rate_at(points, t) for t in (0, 29.9, 30, 59)] == [2, 2, 4, 4]


def test_points_format_and_parse_back() -> None:
    assert S.parse_points(S.format_points(RAMP)) == RAMP
    assert S.format_points(RAMP) == "0:6,60:60,240:60"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("0:6", "at least two"),
        ("5:6,10:6", "t=0"),
        ("0:6,10", "not t:rps"),
        ("0:6,x:1", "two numbers"),
        ("0:6,10:-1", ">= 0"),
        ("0:6,10:nan", "finite"),
        ("0:6,10:6,5:6", "earlier"),
    ],
)
def test_bad_points_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        S.parse_points(text)


@pytest.mark.parametrize(
    ("rps", "per_user", "users"), [(6, 0.5, 12), (60, 0.5, 120), (6.1, 0.5, 13), (0, 1, 0)]
)
def test_users_offer_the_rate_exactly(rps: float, per_user: float, users: int) -> None:
    assert S.users_for(rps, per_user) == users


@given(
    st.floats(0.1, 100),
    st.floats(1, 20),
    st.floats(1, 300),
    st.floats(1, 300),
    st.floats(0, 1, exclude_max=True),
)
def test_the_rate_stays_between_1x_and_the_peak(
    base: float, factor: float, ramp: float, hold: float, at: float
) -> None:
    points = S.ramp_points(base, factor, ramp, hold)
    rate = S.rate_at(points, at * (ramp + hold))
    assert rate is not None and base * (1 - 1e-9) <= rate <= base * factor * (1 + 1e-9)


@given(st.floats(0, 1000), st.floats(0.05, 10))
def test_users_at_per_user_rate_carry_at_least_the_rate_and_one_fewer_would_not(
    rps: float, per_user: float
) -> None:
    users = S.users_for(rps, per_user)
    assert users * per_user >= rps - 1e-6  # rates within 1e-9 users of a whole number round to it
    assert users == 0 or (users - 1) * per_user < rps


def test_a_pacer_s_gaps_average_one_over_its_rate() -> None:
    pacer = S.Pacer(0.5, 0.0, random.Random(7))
    first = pacer.next_at
    starts, now = [], 0.0
    for _ in range(20000):
        now += pacer.wait(now)  # responses take no time: the user is never behind
        starts.append(now)
    assert first > 0 and starts[0] == first
    assert (starts[-1] - starts[0]) / (len(starts) - 1) == pytest.approx(2.0, rel=0.03)


@given(st.floats(0.05, 10), st.floats(0, 100), st.integers(0, 2**32))
def test_a_pacer_behind_sends_at_once_and_never_bursts_to_catch_up(
    rate: float, late: float, seed: int
) -> None:
    pacer = S.Pacer(rate, 0.0, random.Random(seed))
    now = pacer.next_at + late  # the previous response came `late` s after the planned start
    assert pacer.wait(now) == 0.0
    planned = pacer.next_at  # one gap after now, not after the missed start
    assert planned >= now and pacer.wait(now) == planned - now


def test_an_interval_s_percentiles_are_over_its_own_requests_nearest_rank() -> None:
    interval = S.Interval(3, 30.0, 10.0)
    for ms in range(1, 101):  # 1..100 ms, one request each
        interval.add(float(ms), None)
    interval.add(500.0, "ConnectionRefusedError: [Errno 111]")
    line = interval.record(users=12)
    # 101 values: nearest rank of q*(n-1): p50 -> index 50 (51 ms), p95 -> 95 (96 ms), p99 -> 99 (100 ms)
    assert (line["requests"], line["p50"], line["p95"], line["p99"]) == (101, 51.0, 96.0, 100.0)
    assert line["failures"] == 1 and line["errors"] == {"ConnectionRefusedError: [Errno 111]": 1}
    assert line["users"] == 12 and line["interval"] == 3 and line["start"] == 30.0


def test_an_empty_interval_has_no_percentiles() -> None:
    line = S.Interval(0, 0.0, 10.0).record()
    assert line["requests"] == 0 and line["p95"] is None


@given(st.lists(st.floats(0, 1e4), max_size=50), st.floats(0, 1))
def test_the_image_s_percentile_is_bench_common_s(values: list[float], q: float) -> None:
    a, b = S.percentile(values, q), bench_percentile(values, q)
    assert a == b or (math.isnan(a) and math.isnan(b))


def line(index: int, p95: float | None, failures: int = 0, seconds: float = 10.0) -> str:
    d = {
        "interval": index,
        "start": index * 10.0,
        "seconds": seconds,
        "requests": 100,
        "failures": failures,
        "p50": 20.0,
        "p95": p95,
        "p99": None if p95 is None else p95 * 2,
        "errors": {},
        "epoch": 1000.0 + index * 10,
        "target_rps": 10.0,
        "users": 20,
        "cpu": 0.1 * (index + 1),
    }
    return R.MARK + json.dumps(d)


def test_a_log_gives_its_interval_lines_only() -> None:
    log = ["[2026-12-05 20:00:00] WARNING locust.runners: something\n", line(0, 50.0) + "\n", "Type  Name\n"]
    (interval,) = R.parse_log(log)
    assert interval.index == 0 and interval.p95 == 50.0 and interval.rps == 10.0


def test_a_run_s_figures() -> None:
    intervals = R.parse_log(
        [line(0, 50.0), line(1, 250.0, failures=3), line(2, None), line(3, 150.0, seconds=2.0)]
    )
    run = R.RunRecord("hpa", "plain HPA", intervals, [(-5.0, 1, 1), (12.0, 2, 1), (20.0, 3, 2), (30.0, 2, 3)])
    s = R.summarize(run, 200.0)
    # the 2 s tail is not an interval of its own; an interval with no request served counts as over the aim
    assert (s.intervals, s.over_aim, s.over_starts, s.failures) == (3, 2, (10.0, 20.0), 3)
    assert (s.peak_replicas, s.peak_ready, s.worst_p95) == (3, 3, 250.0)
    assert s.share_within == pytest.approx(1 / 3) and s.cpu_max == pytest.approx(0.3)
    assert [R.replicas_at(run.replicas, t) for t in (-10, 0, 12, 25, 99)] == [0, 1, 2, 3, 2]
    assert R.records_from_json(json.loads(json.dumps(R.records_json([run])))) == [run]
    assert "over" not in R.side_by_side([run], 200.0).split("\n")[0] and "plain HPA" in R.side_by_side(
        [run], 200.0
    )


def test_capacity_steps_are_a_staircase() -> None:
    assert cli.capacity_points("2:6:2", 30.0) == "0:2,30:2,30:4,60:4,60:6,90:6"


@pytest.mark.parametrize(
    "args",
    [
        ["--runs", "fixed,nope"],
        ["--base-rps", "0"],
        ["--factor", "0.5"],
        ["--min-replicas", "3", "--max-replicas", "2"],
        ["--web-cpu", "lots"],
        ["--capacity", "2:20"],
        ["--capacity", "9:2:1"],
        ["--hold", "x"],
        [],  # no images for a run
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadtest", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("python -m bench.loadtest: ")
