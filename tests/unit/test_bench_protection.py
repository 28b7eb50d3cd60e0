"""bench.protection_figures, bench.protection's pure parts: the workers' log lines, and the figures counted
from the pod watch's lives and those lines (which pods were removed busy or idle, tasks interrupted and
redelivered, seconds in termination, the time to the target)."""

from __future__ import annotations

import pytest

from bench import protection_figures as P

LOG = """\
2026-12-05T17:40:00.000000000Z [2026-12-05 17:40:00,000: INFO/MainProcess] Connected to redis://redis:6379/0
2026-12-05T17:40:01.250000000Z [2026-12-05 17:40:01,250: INFO/MainProcess] celery@worker-on-a ready.
2026-12-05T17:40:10.123456789Z [2026-12-05 17:40:10,123: INFO/MainProcess] Task demo.work[t-1] received
2026-12-05T17:41:10.5Z [2026-12-05 17:41:10,500: INFO/ForkPoolWorker] Task demo.work[t-1] succeeded in 60.3s
2026-12-05T17:41:11Z [2026-12-05 17:41:11,000: WARNING/MainProcess] worker: Warm shutdown (MainProcess)
"""
T0 = P.kubelet_time("2026-12-05T17:40:00Z")


def test_kubelet_timestamps_are_utc_with_their_fraction() -> None:
    assert P.kubelet_time("1970-01-01T00:00:01Z") == 1.0
    assert P.kubelet_time("1970-01-01T00:00:01.5Z") == 1.5
    assert P.kubelet_time("1970-01-01T00:01:00.123456789Z") == pytest.approx(60.123456789)


def test_a_log_gives_its_received_and_succeeded_lines_only() -> None:
    events = P.parse_log("worker-on-a", LOG)
    assert [(e.kind, e.task, e.pod) for e in events] == [
        ("received", "t-1", "worker-on-a"),
        ("succeeded", "t-1", "worker-on-a"),
    ]
    assert events[0].at == pytest.approx(T0 + 10.123456789)
    assert events[1].at == pytest.approx(T0 + 70.5)


def test_a_line_naming_received_outside_a_task_is_not_an_event() -> None:
    text = "2026-12-05T17:40:00Z [..: INFO/MainProcess] Events of group {task} enabled; received nothing\n"
    assert P.parse_log("p", text) == []


def received(pod: str, task: str, at: float) -> P.TaskEvent:
    return P.TaskEvent(T0 + at, pod, task, "received")


def succeeded(pod: str, task: str, at: float) -> P.TaskEvent:
    return P.TaskEvent(T0 + at, pod, task, "succeeded")


def life(name: str, deleting: float | None = None, gone: float | None = None) -> P.PodLife:
    return P.PodLife(
        name,
        created=T0 - 30,
        ready=T0 - 20,
        deleting=None if deleting is None else T0 + deleting,
        gone=None if gone is None else T0 + gone,
    )


def test_a_protected_scale_down_removes_the_idle_pods_and_interrupts_nothing() -> None:
    # Three busy pods (a, b, c) keep their tasks; the idle d, e, f go and exit at once.
    pods = {n: life(n) for n in "abc"} | {n: life(n, deleting=12, gone=13.5) for n in "def"}
    events = [received(p, f"t-{p}", 1) for p in "abc"] + [succeeded(p, f"t-{p}", 61) for p in "abc"]
    f = P.leg_figures(pods, events, applied=T0 + 5, spec_at=T0 + 11)
    assert (f.removed_busy, f.removed_idle, f.interrupted, f.redelivered) == (0, 3, 0, 0)
    assert (f.succeeded, f.tasks, f.still_terminating) == (3, 3, 0)
    assert f.termination == pytest.approx((1.5, 1.5, 1.5))
    assert f.termination_sum == pytest.approx(4.5) and f.termination_max == pytest.approx(1.5)
    assert f.to_spec == pytest.approx(6) and f.to_pods == pytest.approx(8.5)


def test_a_busy_pod_killed_at_its_grace_period_interrupts_its_task_which_a_survivor_receives_again() -> None:
    # a and b are busy and removed (b's task is killed at the 30 s grace period; a's finished in time),
    # c busy survives; d removed idle; e, f idle survive and e receives b's task again after the visibility
    # timeout.
    pods = {
        "a": life("a", deleting=10, gone=40),
        "b": life("b", deleting=10, gone=41),
        "c": life("c"),
        "d": life("d", deleting=10, gone=11),
        "e": life("e"),
        "f": life("f"),
    }
    events = [
        received("a", "t-a", -20),
        succeeded("a", "t-a", 39.5),  # finished during its warm shutdown, within the grace period
        received("b", "t-b", 1),
        received("c", "t-c", 1),
        succeeded("c", "t-c", 61),
        received("e", "t-b", 130),  # restored after the visibility timeout
        succeeded("e", "t-b", 190),
    ]
    f = P.leg_figures(pods, events, applied=T0 + 5, spec_at=T0 + 9)
    assert (f.removed_busy, f.removed_idle) == (2, 1)
    assert f.interrupted == 1  # b's; a's ended where it started
    assert f.redelivered == 1 and (f.succeeded, f.tasks) == (3, 3)
    assert f.termination_sum == pytest.approx(30 + 31 + 1) and f.termination_max == pytest.approx(31)
    assert f.to_pods == pytest.approx(41 - 5)


def test_a_removed_pod_not_gone_yet_is_counted_apart_and_leaves_no_time_to_the_target() -> None:
    pods = {"a": life("a", deleting=10), "b": life("b", deleting=10, gone=12), "c": life("c")}
    f = P.leg_figures(pods, [received("a", "t", 1)], applied=T0, spec_at=None)
    assert f.still_terminating == 1 and f.termination == pytest.approx((2.0,))
    assert f.to_spec is None and f.to_pods is None
    assert (f.removed_busy, f.removed_idle, f.interrupted) == (1, 1, 1)


def test_a_pod_whose_task_finished_before_its_deletion_was_idle_when_removed() -> None:
    pods = {"a": life("a", deleting=70, gone=71)}
    events = [received("a", "t", 1), succeeded("a", "t", 61)]
    f = P.leg_figures(pods, events, applied=T0 + 65, spec_at=T0 + 69)
    assert (f.removed_busy, f.removed_idle, f.interrupted) == (0, 1, 0)


def test_each_delivery_ends_at_the_first_success_on_its_own_pod_after_it() -> None:
    events = [received("a", "t", 1), received("b", "t", 100), succeeded("b", "t", 160)]
    spans = P.task_spans(events)
    assert [(s.pod, s.succeeded) for s in spans] == [("a", None), ("b", T0 + 160)]
    assert P.busy_at(spans, "a", T0 + 50) and not P.busy_at(spans, "b", T0 + 50)
    assert not P.busy_at(spans, "b", T0 + 160)


def test_the_table_has_a_row_per_leg_and_says_pods_not_gone() -> None:
    on = P.LegFigures(0, 3, 0, 0, 3, 3, (1.0, 1.2, 1.1), 0, 6.0, 8.0)
    off = P.LegFigures(2, 1, 2, 2, 1, 3, (30.4, 30.6), 1, 4.2, None)
    lines = P.table([("on", on), ("off", off)]).splitlines()
    assert len(lines) == 3 and lines[0].split()[0] == "leg"
    assert lines[1].split()[:5] == ["on", "0/3", "0", "0", "3/3"]
    assert lines[2].split()[:5] == ["off", "2/1", "2", "2", "1/3"]
    assert "3.3" in lines[1] and "61.0" in lines[2] and "(+1 not gone)" in lines[2]
    assert lines[2].split()[-4] == "-"  # no time to 3 pods while one is still terminating


def test_rounds_of_a_leg_combine_by_summing_counts_and_keeping_every_termination() -> None:
    one = P.LegFigures(0, 3, 0, 0, 3, 3, (1.0, 2.0, 1.5), 0, 4.0, 8.0)
    two = P.LegFigures(2, 1, 2, 2, 3, 3, (30.5, 30.2, 1.0), 0, 2.0, 33.0)
    both = P.combined([one, two])
    assert (both.removed_busy, both.removed_idle, both.interrupted, both.redelivered) == (2, 4, 2, 2)
    assert (both.succeeded, both.tasks) == (6, 6)
    assert both.termination_sum == pytest.approx(66.2) and both.termination_max == pytest.approx(30.5)
    assert (both.to_spec, both.to_pods) == (4.0, 33.0)  # the slowest round
    stuck = P.LegFigures(1, 0, 1, 0, 0, 1, (), 1, 3.0, None)
    assert P.combined([one, stuck]).to_pods is None and P.combined([one, stuck]).still_terminating == 1


def test_a_runs_records_come_back_from_its_json_for_a_replot_and_rows_combine_each_setting() -> None:
    import json
    from dataclasses import asdict

    pods = {"a": life("a", deleting=10, gone=40), "b": life("b")}
    events = [received("a", "t-1", 1), received("b", "t-1", 150), succeeded("b", "t-1", 210)]
    figures = P.leg_figures(pods, events, applied=T0, spec_at=T0 + 1)
    records = [
        P.LegRecord(k, T0, T0 - 3, T0 + 1, pods, events, ["Normal Scaled"], figures)
        for k in ("on-1", "off-1", "off-2")
    ]
    again = P.records_from_json(json.loads(json.dumps([asdict(r) for r in records])))
    assert again == records
    rows = P.leg_rows(again)
    assert [leg for leg, _ in rows] == ["on-1", "off-1", "off-2", "on", "off"]
    assert (
        rows[-1][1].interrupted == 2 and rows[-1][1].redelivered == 2 and rows[-2][1] == P.combined([figures])
    )
