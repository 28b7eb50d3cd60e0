"""The simulator on a small synthetic step trace."""

from __future__ import annotations

from pathlib import Path

import pytest

from scalekeeper import model
from scalekeeper.simulate import (
    Observation,
    QueueModel,
    RuleResult,
    RuleSummary,
    SeriesHistory,
    ServiceTime,
    StreamFeed,
    TaskStream,
    WaitStats,
    Workload,
    format_table,
    intervals_over_target,
    late_allowance,
    load_curve,
    main,
    make_workload,
    parse_trace,
    replay_schedule,
    reversals,
    run_rules,
    standard_rules,
    stream_rules,
    summarize,
)
from scalekeeper.tiers.workers import worker_params

POLICY = """\
apiVersion: scalekeeper.dev/v1alpha1
kind: ScalingPolicy
metadata:
  name: demo
spec:
  intervalSeconds: 15
  workers:
    - queue: video
      deployment: worker-video
      minReplicas: 1
      maxReplicas: 30
      tasksPerWorker: 2
      drainSeconds: 60
      concurrency: 2
      prefetchMultiplier: 8
      behavior:
        scaleUp:
          policies:
            - {type: Percent, value: 200, periodSeconds: 15}
            - {type: Pods, value: 8, periodSeconds: 15}
        scaleDown:
          stabilizationWindowSeconds: 120
          policies:
            - {type: Percent, value: 25, periodSeconds: 30}
simulation:
  serviceSeconds: 2.0
"""

STEP_START, STEP_END = 300.0, 900.0  # 8 tasks/s between minute 5 and 15, 0.5 tasks/s around it


def step_trace_csv() -> str:
    rows = ["t_seconds,arrivals"]
    for minute in range(30):
        rows.append(f"{minute * 60},{480 if 5 <= minute < 15 else 30}")
    return "\n".join(rows) + "\n"


def spec() -> model.ScalingPolicySpec:
    import yaml

    return model.parse_spec(yaml.safe_load(POLICY)["spec"])


TARGET_WAIT = 30.0
Results = tuple[RuleResult, ...]


def run(seed: int) -> Results:
    """The three rules on the step trace, 900 s of tail, as `scalekeeper simulate` runs them."""
    trace = parse_trace(step_trace_csv())
    worker = spec().workers[0]  # type: ignore[index]
    return run_rules(
        standard_rules(spec(), worker),
        make_workload(trace, ServiceTime(2.0), seed),
        worker,
        start_delay=20.0,
        horizon=trace.end + 900,
        target_wait=TARGET_WAIT,
        initial_replicas=worker.min_replicas,
    )


def streamed(seed: int) -> tuple[RuleSummary, ...]:
    """The same, as `scalekeeper simulate` runs them: the tasks streamed, only the figures kept."""
    trace = parse_trace(step_trace_csv())
    worker = spec().workers[0]  # type: ignore[index]
    return stream_rules(
        standard_rules(spec(), worker),
        TaskStream(trace.intervals, ServiceTime(2.0), seed),
        worker,
        start_delay=20.0,
        horizon=trace.end + 900,
        target_wait=TARGET_WAIT,
        initial_replicas=worker.min_replicas,
    )


@pytest.fixture(scope="module")
def sim() -> Results:
    return run(seed=3)


def test_trace_formats() -> None:
    two = parse_trace("t_seconds,arrivals\n0,10\n60,20\n120,5\n")
    assert two.starts == (0.0, 60.0, 120.0) and two.lengths == (60.0, 60.0, 60.0) and two.end == 180.0
    bare = parse_trace("10\n20\n5\n", step=30)
    assert bare.starts == (0.0, 30.0, 60.0) and bare.counts == (10.0, 20.0, 5.0) and bare.end == 90.0
    with pytest.raises(ValueError, match="--step"):
        parse_trace("10\n20\n")
    with pytest.raises(ValueError, match="row 2: time 0 is not after row 1"):
        parse_trace("0,1\n0,2\n")
    with pytest.raises(ValueError, match="row 1: arrivals -1"):
        parse_trace("0,-1\n")


def test_poisson_arrivals_follow_the_trace() -> None:
    w = make_workload(parse_trace(step_trace_csv()), ServiceTime(2.0), seed=5)
    in_step = sum(1 for t in w.arrivals if STEP_START <= t < STEP_END)
    outside = len(w.arrivals) - in_step
    assert 4500 < in_step < 5100  # 4800 expected
    assert 500 < outside < 700  # 600 expected
    assert sorted(w.arrivals) == list(w.arrivals)
    assert 1.8 < sum(w.services) / len(w.services) < 2.2


def test_scalekeeper_drains_the_step(sim: Results) -> None:
    sk = sim[0]
    assert sk.name == "scalekeeper"
    assert sk.undrained == 0
    # Five minutes after the step, waits are back to baseline: no task over the target, and
    # most wait only behind a prefetched neighbour.
    late = [
        w
        for w, start in zip(sk.waits, sk.starts, strict=True)
        if start is not None and start > STEP_END + 300
    ]
    assert late and max(late) < TARGET_WAIT
    assert sorted(late)[int(0.95 * len(late))] < 5.0
    # It scaled up for the step and back down to min afterwards.
    assert max(n for _, n in sk.replicas) >= 8
    assert sk.replicas[-1][1] == 1


def test_keda_style_suffers_from_prefetch(sim: Results) -> None:
    sk, hpa, keda = sim
    assert (hpa.name, keda.name) == ("hpa-default", "keda-style")
    # Prefetched tasks are invisible to LLEN: the KEDA-style rule lets waits run over more
    # often, although it spends at least as many replica-hours.
    assert keda.minutes_over_target > sk.minutes_over_target
    assert keda.percentile(95) > sk.percentile(95)
    for r in sim:
        assert r.replica_hours > 0
        assert r.scale_events > 0


def test_same_seed_same_numbers(sim: Results) -> None:
    again = run(seed=3)
    assert again == sim
    assert format_table(streamed(3), TARGET_WAIT) == format_table(streamed(3), TARGET_WAIT)
    other = run(seed=4)
    assert other[0].waits != sim[0].waits


@pytest.mark.parametrize("distribution", ["exponential", "constant", "lognormal"])
def test_a_task_stream_draws_the_tasks_make_workload_draws(distribution: str) -> None:
    trace = parse_trace(step_trace_csv())
    service = ServiceTime(2.0, distribution)
    whole = make_workload(trace, service, seed=9)
    stream = TaskStream(trace.intervals, service, seed=9)
    assert stream.count == len(whole.arrivals)
    assert list(stream) == list(zip(whole.arrivals, whole.services, strict=True))
    assert stream.workload() == whole


def test_streamed_figures_are_those_of_the_tasks_kept(sim: Results) -> None:
    """The streamed run keeps no task, yet its figures are those read from every task's wait: the
    percentiles to 0.1 s, minutes over target by arrival minute (as bench/quality.py counts)."""
    work = make_workload(parse_trace(step_trace_csv()), ServiceTime(2.0), seed=3)
    horizon = parse_trace(step_trace_csv()).end + 900
    for kept, summary in zip(sim, streamed(3), strict=True):
        assert summarize(kept, work.arrivals, horizon, TARGET_WAIT) == summary
        assert summary.wait_p95 == round(kept.percentile(95), 1)
        assert summary.wait_max == round(kept.percentile(100), 1)
        over = intervals_over_target(work.arrivals, kept.waits, TARGET_WAIT, 60.0)
        assert summary.minutes_over_target == len(over) == kept.minutes_over_target
        assert summary.replica_seconds == pytest.approx(kept.replica_seconds)
        assert (summary.scale_events, summary.replicas) == (kept.scale_events, kept.replicas)
        assert summary.undrained == kept.undrained and summary.tasks == len(work.arrivals)
        assert summary.reversals == reversals(kept.replicas)


def test_wait_stats_count_by_arrival_minute() -> None:
    # Minute 0: two tasks, one waits 40 s -> p95 (the larger of two) over 30 s. Minute 1: fine.
    # Minute 3: one task never started, its wait counted to the end of the run -> over.
    stats = WaitStats(30.0)
    for arrival, start in ((10.0, 10.0), (20.0, None), (20.0, 60.0), (70.0, 71.0), (200.0, None)):
        if start is None:
            stats.arrived(arrival)
        else:
            stats.arrived(arrival)
            stats.started(arrival, start)
    stats.finish(120.0 + 180.0, [20.0, 200.0])
    s = stats.summary("r", 10.0, [(0.0, 1)], 0)
    assert (s.minutes_over_target, s.minutes_with_arrivals, s.undrained, s.tasks) == (2, 3, 2, 5)
    assert s.p95_by_minute == ((0, 280.0), (1, 1.0), (3, 100.0))
    assert (s.wait_p50, s.wait_p95, s.wait_max) == (40.0, 280.0, 280.0)


def test_reversals_count_changes_of_direction_within_a_minute() -> None:
    replicas = [(0.0, 1), (10.0, 3), (40.0, 2), (200.0, 1), (230.0, 4), (400.0, 4)]
    assert reversals(replicas) == 2  # up then down 30 s later; down then up 30 s later
    assert reversals(replicas, within=20.0) == 0


def test_the_forecast_history_forgets_what_no_window_reaches() -> None:
    kept, trimmed = SeriesHistory(), SeriesHistory(keep_seconds=150.0 + 20.0)
    for t in range(0, 2000, 5):
        for h in (kept, trimmed):
            h.add(float(t), float(t % 97))
        assert trimmed.forecast(float(t), 150.0, 20.0) == kept.forecast(float(t), 150.0, 20.0)
    assert len(trimmed.times) < 2 * 170 / 5 + 2


def test_the_load_curve_keeps_every_arrival_in_few_bins() -> None:
    trace = parse_trace("".join(f"{t},{t % 7}\n" for t in range(0, 100_000, 10)), step=10)
    curve = load_curve(trace.intervals())
    assert len(curve.arrivals) <= curve.max_bins and curve.width == 32.0
    assert sum(curve.arrivals) == pytest.approx(sum(trace.counts))
    short = load_curve(parse_trace(step_trace_csv()).intervals())
    _, ys = short.steps()
    assert short.width == 1.0 and max(ys) == 8.0 and ys[0] == 0.5


def test_cli_prints_table_and_writes_png(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    # A bare column of counts per 60 s interval.
    counts = [30 if not 5 <= m < 15 else 480 for m in range(30)]
    trace = tmp_path / "trace.csv"
    trace.write_text("\n".join(str(c) for c in counts) + "\n")
    out = tmp_path / "out.png"
    code = main(
        [
            "--policy",
            str(policy),
            "--trace",
            str(trace),
            "--step",
            "60",
            "--plot",
            str(out),
            "--seed",
            "3",
            "--tail",
            "900",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    for name in ("scalekeeper", "hpa-default", "keda-style", "wait p95", "replica-h", "min>30s"):
        assert name in printed
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Same table as the library call on the equivalent two-column trace.
    assert format_table(streamed(3), TARGET_WAIT) in printed
    assert "simulated minutes" in printed and "by arrival minute" in printed


def test_cli_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("spec:\n  workers: []\n")
    trace = tmp_path / "trace.csv"
    trace.write_text("0,1\n")
    assert main(["--policy", str(policy), "--trace", str(trace)]) == 2
    assert "scalekeeper simulate:" in capsys.readouterr().err


# ------------------------------------------------------------- what the oracle builds on


def one_slot_worker(max_replicas: int = 5) -> model.WorkerSpec:
    return model.WorkerSpec(
        queue="q",
        deployment="w",
        min_replicas=0,
        max_replicas=max_replicas,
        tasks_per_worker=1,
        concurrency=1,
        prefetch_multiplier=1,
    )


def test_a_copy_runs_on_without_touching_the_original() -> None:
    work = Workload(arrivals=(0.0, 1.0, 2.0), services=(5.0, 5.0, 5.0))
    q = QueueModel(work, concurrency=1, prefetch=1, start_delay=0.0, initial_replicas=1)
    q.advance(1.5)
    twin = q.copy()
    twin.scale_to(3, 1.5)
    twin.advance(100.0)
    assert twin.starts == [0.0, 1.5, 2.0]
    # The original still has task 1 waiting and one pod, and goes on as if nothing happened.
    assert q.starts == [0.0, None, None] and q.replicas == 1 and list(q.broker) == [1]
    q.advance(100.0)
    assert q.starts == [0.0, 5.0, 10.0]


def test_pods_started_ahead_are_ready_at_once_and_charged_from_before() -> None:
    work = Workload(arrivals=(30.0,), services=(4.0,))
    q = QueueModel(work, concurrency=1, prefetch=1, start_delay=20.0, initial_replicas=0)
    q.advance(30.0)
    q.scale_to(1, 30.0, started_ahead=True)
    q.advance(40.0)
    assert q.starts == [30.0]  # no start delay seen by the task
    assert q.pod_spans(40.0) == ((10.0, 40.0),) and q.replica_seconds(40.0) == 30.0
    # At t=0 there is no "before" to charge: like the other rules' initial replicas.
    early = QueueModel(work, concurrency=1, prefetch=1, start_delay=20.0, initial_replicas=0)
    early.scale_to(2, 5.0, started_ahead=True)
    assert [created for created, _ in early.pod_spans(5.0)] == [0.0, 0.0]


def test_the_engine_sees_ready_pods_apart_from_starting_ones() -> None:
    work = Workload(arrivals=(1.0,), services=(1.0,))
    q = QueueModel(work, concurrency=1, prefetch=1, start_delay=20.0, initial_replicas=1)
    q.scale_to(3, 0.0)
    q.advance(5.0)
    assert (q.replicas, q.observe(5.0).ready) == (3, 1)
    q.advance(25.0)
    assert q.observe(25.0).ready == 3
    q.scale_to(1, 25.0)
    assert q.observe(25.0).ready == 1  # terminating pods take no tasks


def test_over_a_stream_the_model_keeps_only_what_is_live() -> None:
    tasks = [(float(t), 0.5) for t in range(1000)]
    stats = WaitStats(30.0)
    q = QueueModel(
        StreamFeed(tasks), concurrency=1, prefetch=1, start_delay=20.0, initial_replicas=1, recorder=stats
    )
    for t in range(0, 1001, 10):
        q.advance(float(t))
        q.scale_to(1 + (t // 10) % 3, float(t))
    assert q.pods is None and q.starts is None
    assert len(q.pending) == 0 and len(q.live) <= 3 and len(q.arrived_recently) <= 61
    assert q.pod_count > 10 and q.replica_seconds(1000.0) > 1000.0
    assert stats.tasks == 1000 and len(stats.open) <= 2


def test_intervals_over_target_by_arrival() -> None:
    arrivals = [1.0, 2.0, 61.0, 62.0, 200.0]
    waits = [0.0, 31.0, 5.0, 10.0, 29.0]
    # Nearest-rank p95 of two tasks is the larger: interval 0 is over; 3 (no arrivals) never is.
    assert intervals_over_target(arrivals, waits, 30.0, 60.0) == (0,)
    assert intervals_over_target(arrivals, waits, 9.0, 60.0) == (0, 1, 3)
    # p50 of two is the smaller one.
    assert intervals_over_target(arrivals, waits, 9.0, 60.0, quantile=50) == (3,)
    assert late_allowance(19, 95) == 0 and late_allowance(20, 95) == 1 and late_allowance(0, 95) == 0


def test_replay_schedule_follows_it_with_pods_ready_on_time() -> None:
    work = Workload(arrivals=(0.0, 0.1, 0.2, 65.0), services=(10.0, 10.0, 10.0, 10.0))
    r = replay_schedule(work, one_slot_worker(), 20.0, 180.0, 5.0, 60.0, [3, 1, 0])
    assert r.waits == pytest.approx((0.0, 0.0, 0.0, 0.0))
    assert r.replicas == ((0.0, 0), (0.0, 3), (60.0, 1), (120.0, 0)) and r.scale_events == 3
    # Three pods 0..60 (idle ones end at the scale-down), one of them kept until 120.
    assert r.replica_seconds == pytest.approx(3 * 60.0 + 60.0)
    short = replay_schedule(work, one_slot_worker(), 20.0, 180.0, 5.0, 60.0, [2, 1, 0])
    assert short.waits == pytest.approx((0.0, 0.0, 9.8, 0.0))


def test_effective_tasks_per_worker_falls_back_to_what_a_pod_holds() -> None:
    drain_only = model.WorkerSpec(
        queue="q", deployment="w", max_replicas=5, drain_seconds=60, concurrency=2, prefetch_multiplier=3
    )
    # the engine's rule, which the simulator's KEDA-style rule uses too (no second copy of it)
    assert worker_params(drain_only).effective_tasks_per_worker == 6
    given = drain_only.model_copy(update={"tasks_per_worker": 4})
    assert worker_params(given).effective_tasks_per_worker == 4


def test_reversals_count_quick_changes_of_direction() -> None:
    # up, up (same direction), down 30 s later (a reversal), up 90 s later (too late to count),
    # down 60 s later (counts: within 60 s inclusive); a repeated value is no change.
    series = [(0.0, 1), (10.0, 3), (20.0, 4), (50.0, 2), (140.0, 3), (140.0, 3), (200.0, 1)]
    assert reversals(series) == 2
    assert reversals(series, within=20.0) == 0
    assert reversals([(0.0, 0)]) == 0


def test_the_peers_size_by_their_own_worker_when_one_is_given() -> None:
    worker = spec().workers[0]  # type: ignore[index]
    peer = worker.model_copy(update={"tasks_per_worker": 40})
    obs = Observation(waiting=80, in_flight=0, arrival_rate=0.0, completion_rate=0.0, ready=1)
    own = {name: decide for name, decide, _ in standard_rules(spec(), worker)}
    apart = {name: decide for name, decide, _ in standard_rules(spec(), worker, peer=peer)}
    # keda-style: ceil(80 waiting / tasksPerWorker), within the worker's bounds.
    assert apart["keda-style"](0.0, 1, obs) == 2
    assert own["keda-style"](0.0, 1, obs) == min(worker.max_replicas, -(-80 // worker.tasks_per_worker))
    assert own["keda-style"](0.0, 1, obs) > 2
    # hpa-default: the engine with the peer's ratio; scalekeeper keeps the worker's own.
    assert apart["hpa-default"](0.0, 1, obs) == 2
    assert apart["scalekeeper"](0.0, 1, obs) == own["scalekeeper"](0.0, 1, obs) > 2
