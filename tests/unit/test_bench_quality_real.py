"""bench.quality_real's pure parts: the figures from recorded task times, pod lifetimes and replica
samples, counted as the simulator counts them; the slice of the trace; the side-by-side table."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from bench import quality as Q
from bench import traces as T
from bench.quality import DEMO_POLICY
from bench.quality_real import compare, legs, records
from bench.quality_real.legs import Leg
from scalekeeper import model


def timing(index: int, enqueued: float, started: float, finished: float, host: str = "p") -> object:
    return records.TaskTiming(index, enqueued, started, finished, host)


def test_waits_use_the_real_publish_time_and_the_horizon_for_tasks_not_started() -> None:
    scheduled = [0.0, 10.0, 20.0, 30.0]
    timings = [
        timing(0, 0.1, 1.1, 3.0),
        timing(1, 10.2, 50.2, 51.0),
        timing(3, 30.0, 99.0, 100.0),  # started after the horizon: not started for the figures
    ]
    arrivals, waits, starts = records.task_waits(scheduled, timings, horizon=60.0)
    assert arrivals == [0.1, 10.2, 20.0, 30.0]  # task 2 never recorded: its schedule offset
    assert waits == pytest.approx([1.0, 40.0, 40.0, 30.0])
    assert starts == [1.1, 50.2, None, None]


def test_a_task_run_twice_keeps_its_first_start() -> None:
    timings = [timing(0, 0.0, 9.0, 10.0), timing(0, 0.0, 2.0, 3.0)]
    _, waits, _ = records.task_waits([0.0], timings, horizon=60.0)
    assert waits == [2.0]


def test_replica_seconds_clip_pods_to_the_run() -> None:
    pods = [
        records.PodLife("before", created=-30.0, deleted=None),  # there before the start: from 0
        records.PodLife("short", created=10.0, deleted=40.0),
        records.PodLife("late", created=50.0, deleted=None),  # still there: until the horizon
        records.PodLife("after", created=70.0, deleted=80.0),  # after the horizon: nothing
    ]
    assert records.replica_seconds(pods, horizon=60.0) == pytest.approx(60 + 30 + 10)


def test_scale_events_count_changes_within_the_run_only() -> None:
    samples = [(-20.0, 1), (-5.0, 2), (3.0, 4), (9.0, 4), (30.0, 2), (61.0, 1)]
    # -5 s: before the start (the initial value); 3 s: 2 -> 4; 30 s: 4 -> 2; 61 s: after the horizon.
    assert records.scale_events(samples, horizon=60.0) == 2
    assert records.scale_events([], horizon=60.0) == 0


def test_real_metrics_over_target_minutes_p95_and_slot_use() -> None:
    # Minute 0: 20 tasks waiting 1 s; minute 1: 20 tasks, one waits 100 s (p95 of 20 by nearest rank is
    # the 19th: still 1 s), minute 2: 20 tasks, two wait 100 s (the 19th is 100 s: over).
    scheduled = [m * 60.0 + i for m in range(3) for i in range(20)]
    timings = []
    for k, a in enumerate(scheduled):
        late = (k == 20) or k in (40, 41)
        wait = 100.0 if late else 1.0
        timings.append(timing(k, a, a + wait, a + wait + 0.5))
    pods = [records.PodLife("a", -10.0, None)]
    m = compare.real_metrics("x", scheduled, timings, pods, [(-1.0, 1)], 300.0, 2, 30.0)
    assert m.minutes_over_target == 1
    assert m.minutes_with_arrivals == 3
    assert m.wait_p95 == 1.0  # 3 of 60 late: the 57th of 60 waits is 1 s
    assert m.replica_hours == pytest.approx(300 / 3600)
    assert m.slot_use == pytest.approx(60 * 0.5 / (300 * 2))
    assert m.scale_events == 0
    assert m.undrained == 0


def test_window_of_a_business_day() -> None:
    calls = [T.CallCount(datetime(2003, 3, 3, h, m), 1.0) for h in range(7, 21) for m in range(0, 60, 5)]
    calls += [T.CallCount(datetime(2003, 3, 4, 8, 0), 5.0)]
    window = compare.select_window(calls, 0, "08:00", 2 * 3600)
    assert window[0].start == datetime(2003, 3, 3, 8, 0)
    assert window[-1].start == datetime(2003, 3, 3, 9, 55)
    assert len(window) == 24
    with pytest.raises(ValueError):
        compare.select_window(calls, 5, "08:00", 3600)


def test_side_by_side_shows_real_simulated_and_difference() -> None:
    real = Q.RuleMetrics("real", 2, 10, 35.0, 1.25, 0.5, 7, 0)
    sim = Q.RuleMetrics("scalekeeper", 0, 10, 1.5, 1.0, 0.6, 11, 0)
    table = compare.side_by_side([("scalekeeper vs scalekeeper", real, sim)], None, 30.0)
    row = table.splitlines()[2]
    assert "2 / 0 / +2 of 10" in row
    assert "35.0 / 1.5 / +33.5" in row
    assert "1.250 / 1.000 / +0.250" in row
    assert "7 / 11 / -4" in row


def test_pods_alive_and_the_controllers_lag_on_a_scale_up() -> None:
    pods = [
        records.PodLife("first", created=-30.0, deleted=None),
        records.PodLife("a", created=12.0, deleted=50.0),
        records.PodLife("b", created=13.0, deleted=None),
        records.PodLife("late", created=70.0, deleted=None),  # after the horizon
    ]
    assert records.pods_alive(pods, horizon=60.0) == [(0.0, 1), (12.0, 2), (13.0, 3), (50.0, 2)]
    replicas = [(-20.0, 1), (10.0, 3), (40.0, 2)]
    # a and b were created 2 and 3 s after spec.replicas went 1 -> 3; "first" predates the run.
    assert records.creation_lags(pods[:3], replicas) == [2.0, 3.0]
    # creationTimestamp is cut to the second: a pod stamped 0.6 s before the watch saw the rise is its pod.
    early = [records.PodLife("c", created=39.4, deleted=None)]
    assert records.creation_lags(early, [(-1.0, 1), (10.0, 3), (40.0, 4)]) == [0.0]


def test_a_legs_record_has_its_figures_and_what_the_report_reads() -> None:
    worker = SimpleNamespace(concurrency=2)
    workload = SimpleNamespace(arrivals=[0.0, 1.0, 2.0])
    sl: Any = SimpleNamespace(workload=workload, horizon=60.0, worker=worker)
    leg = Leg("sk", "slice-sk", "scalekeeper", "scalekeeper")
    timings = [
        timing(0, 0.5, 1.0, 3.0, "w-1"),
        timing(1, 1.5, 2.0, 4.0, "w-1"),
        timing(2, 2.1, 7.0, 9.0, "w-2"),
    ]
    pods = [records.PodLife("w-1", -5.0, None), records.PodLife("w-2", 4.0, None)]
    replicas = [(-1.0, 1), (3.5, 2)]
    record, m = compare.leg_figures(leg, sl, timings, pods, replicas, target_wait=30.0)
    assert m.name == "scalekeeper" and m.scale_events == 1 and m.undrained == 0
    assert record["namespace"] == "slice-sk" and record["tasks_recorded"] == 3
    assert record["publish_lag_p95"] == pytest.approx(0.5)  # nearest rank of [0.1, 0.5, 0.5]
    assert record["pod_creation_to_first_task"] == [3.0]  # w-2: created at 4 s, first task at 7 s
    assert record["scale_up_to_pod_created"] == [0.5]
    assert record["pods_alive"] == [(0.0, 1), (4.0, 2)]
    assert record["metrics"]["scale_events"] == 1


def test_the_scalekeeper_legs_queries_are_narrowed_to_its_namespace() -> None:
    raw = yaml.safe_load(DEMO_POLICY.read_text())
    spec = model.parse_spec(raw["spec"])
    # The demo's video worker reads the objective's inputs too (targetWaitSeconds) and protects its busy pods.
    body = legs.scaling_policy(spec, raw, "video", "slice-sk")
    metrics = body["spec"]["workers"][0]["metrics"]
    assert set(metrics) == {
        "waiting",
        "inFlight",
        "arrivalRate",
        "completionRate",
        "serviceSeconds",
        "serviceScv",
        "executingPerPod",
    }
    assert all('namespace="slice-sk"' in query for query in metrics.values()), metrics


def test_the_objective_only_leg_drops_the_ratio_and_the_peers_keep_theirs() -> None:
    raw = yaml.safe_load(DEMO_POLICY.read_text())
    spec = model.parse_spec(raw["spec"])
    body = legs.scaling_policy(spec, raw, "video", "slice-sk", objective_only=True)
    written = body["spec"]["workers"][0]
    assert "tasksPerWorker" not in written and written["targetWaitSeconds"] == 30
    assert "tasksPerWorker" in legs.scaling_policy(spec, raw, "video", "slice-sk")["spec"]["workers"][0]
    worker = compare.slice_worker(spec, "video", 1, objective_only=True)
    assert worker.tasks_per_worker is None and worker.target_wait_seconds == 30 and worker.min_replicas == 1
    peer = compare.peer_worker(worker, 4)
    assert peer.tasks_per_worker == 4 and peer.target_wait_seconds is None
    trigger = legs.scaled_object(peer, "slice-keda")["spec"]["triggers"][0]["metadata"]
    assert trigger["listLength"] == "4"
    target = legs.plain_hpa(peer)["spec"]["metrics"][0]["object"]["target"]
    assert target == {"type": "AverageValue", "averageValue": "4"}


def test_objective_only_needs_a_target_wait_and_a_peer_ratio_of_at_least_one() -> None:
    raw = yaml.safe_load(DEMO_POLICY.read_text())
    spec = model.parse_spec(raw["spec"])
    with pytest.raises(ValueError, match="targetWaitSeconds"):
        compare.slice_worker(spec, "emails", 1, objective_only=True)
    with pytest.raises(ValueError, match="at least 1"):
        compare.peer_worker(compare.slice_worker(spec, "video", 1), 0)
