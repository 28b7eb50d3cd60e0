"""The policy-level decision (decision.decide) on full ScalingPolicy specs."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalekeeper import model
from scalekeeper.decision import decide
from scalekeeper.engine.types import LimitedBy, ObservedTarget, TargetHistory
from scalekeeper.tiers.read_replicas import READ_LOAD, READ_REPLICAS
from scalekeeper.tiers.web import REQUEST_RATE, WEB
from scalekeeper.tiers.workers import ARRIVAL_RATE, COMPLETION_RATE, IN_FLIGHT, WAITING, worker_target

MANY = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = 1_700_000_000.0


def full_spec(**overrides: Any) -> model.ScalingPolicySpec:
    data: dict[str, Any] = {
        "web": {
            "deployment": "web",
            "minReplicas": 2,
            "maxReplicas": 30,
            "requestRate": {"query": "sum(rate(http_requests_total[1m]))", "perReplica": 50},
        },
        "workers": [
            {"queue": "video", "deployment": "worker-video", "maxReplicas": 40, "tasksPerWorker": 10},
            {
                "queue": "emails",
                "deployment": "worker-emails",
                "minReplicas": 1,
                "maxReplicas": 20,
                "tasksPerWorker": 20,
                "drainSeconds": 120,
            },
        ],
        "readReplicas": {
            "target": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "pg-read"},
            "minReplicas": 1,
            "maxReplicas": 6,
            "floor": 2,
            "metric": {"query": "sum(pg_stat_activity_count)", "perReplica": 100},
        },
    }
    data.update(overrides)
    return model.parse_spec(data)


def samples(
    rate: float = 200.0,
    video: tuple[float, float] = (50.0, 4.0),
    emails: tuple[float, float] = (10.0, 2.0),
    load: float = 250.0,
    at: float = NOW,
) -> dict[str, dict[str, Any]]:
    return {
        WEB: {REQUEST_RATE: (rate, at)},
        worker_target("video"): {WAITING: (video[0], at), IN_FLIGHT: (video[1], at)},
        worker_target("emails"): {
            WAITING: (emails[0], at),
            IN_FLIGHT: (emails[1], at),
            ARRIVAL_RATE: (0.5, at),
            COMPLETION_RATE: (0.5, at),
        },
        READ_REPLICAS: {READ_LOAD: (load, at)},
    }


OBSERVED = {WEB: 4, worker_target("video"): 4, worker_target("emails"): 1, READ_REPLICAS: 3}


def test_every_target_is_decided_in_spec_order() -> None:
    d = decide(full_spec(), OBSERVED, samples(), {}, NOW)
    assert list(d.targets) == ["web", "worker/video", "worker/emails", "readReplicas"]
    assert d.targets[WEB].desired == 4  # 200 / 50 = 4: exactly on target
    assert d.targets[WEB].limited_by is LimitedBy.TOLERANCE
    assert d.targets[WEB].metrics == {REQUEST_RATE: 200.0}
    assert d.targets[worker_target("video")].desired == 6  # ceil(54 / 10)
    assert d.targets[worker_target("video")].metrics == {"waiting": 50.0, "in_flight": 4.0, "load": 54.0}
    assert d.targets[READ_REPLICAS].desired == 3  # 250 / 100 -> 3, already there
    assert d.mode == "Enforce"


def test_dry_run_decides_the_same() -> None:
    enforce = decide(full_spec(), OBSERVED, samples(rate=900), {}, NOW)
    dry = decide(full_spec(mode="DryRun"), OBSERVED, samples(rate=900), {}, NOW)
    assert dry.mode == "DryRun"
    assert dry.targets == enforce.targets


def test_histories_round_trip_through_json() -> None:
    first = decide(full_spec(), OBSERVED, samples(rate=900), {}, NOW)
    stored = json.loads(json.dumps(first.histories()))
    observed = {name: t.desired for name, t in first.targets.items()}
    again = decide(full_spec(), observed, samples(rate=900, at=NOW + 15), stored, NOW + 15)
    direct = decide(
        full_spec(),
        observed,
        samples(rate=900, at=NOW + 15),
        {n: t.history for n, t in first.targets.items()},
        NOW + 15,
    )
    assert again.targets == direct.targets


def test_read_replicas_never_below_floor_on_scale_down() -> None:
    spec = full_spec()
    # Load fits one replica, but the floor is 2; the HPA down window is seeded with 5, so
    # let it pass by deciding with an old, low history.
    history = TargetHistory.from_dict({"recommendations": [[1, NOW - 1000]]})
    d = decide(spec, {**OBSERVED, READ_REPLICAS: 5}, samples(load=50), {READ_REPLICAS: history}, NOW)
    rr = d.targets[READ_REPLICAS]
    assert (rr.desired, rr.limited_by) == (2, LimitedBy.FLOOR)
    assert "floor 2" in rr.reason


def test_absent_target_is_reported_not_scaled() -> None:
    d = decide(full_spec(), {**OBSERVED, WEB: None}, samples(), {}, NOW)
    assert not d.targets[WEB].exists
    assert "does not exist" in d.targets[WEB].reason
    d2 = decide(full_spec(), {**OBSERVED, WEB: ObservedTarget(0, exists=False)}, samples(), {}, NOW)
    assert not d2.targets[WEB].exists


def test_corrupt_history_is_dropped_with_a_note() -> None:
    d = decide(full_spec(), OBSERVED, samples(), {WEB: {"recommendations": "garbage"}}, NOW)
    assert d.targets[WEB].desired == 4
    assert d.notes and d.notes[0].startswith("web: stored history ignored")


def test_missing_worker_metric_holds_and_says_why() -> None:
    s = samples(video=(math.nan, 4.0))
    d = decide(full_spec(), OBSERVED, s, {}, NOW)
    video = d.targets[worker_target("video")]
    assert (video.desired, video.limited_by) == (4, LimitedBy.MISSING_METRIC)
    assert "metric waiting for queue video is NaN" in video.reason


def test_stale_metric_holds() -> None:
    d = decide(full_spec(), OBSERVED, samples(rate=10.0, at=NOW - 600), {}, NOW)
    web = d.targets[WEB]
    assert (web.desired, web.limited_by) == (4, LimitedBy.MISSING_METRIC)
    assert "metric request_rate for web is stale (600s old" in web.reason


def test_drain_metric_missing_still_allows_scale_up_from_the_queue() -> None:
    s = samples(emails=(400.0, 2.0))
    s[worker_target("emails")][ARRIVAL_RATE] = (math.inf, NOW)
    d = decide(full_spec(), OBSERVED, s, {}, NOW)
    emails = d.targets[worker_target("emails")]
    assert emails.desired > 1  # the queue estimate alone asks for 21 (rate-limited to 5)
    # ...but the same gap blocks a scale-down.
    s2 = samples(emails=(0.0, 0.0))
    s2[worker_target("emails")][ARRIVAL_RATE] = (math.inf, NOW)
    d2 = decide(full_spec(), {**OBSERVED, worker_target("emails"): 6}, s2, {}, NOW)
    held = d2.targets[worker_target("emails")]
    assert (held.desired, held.limited_by) == (6, LimitedBy.MISSING_METRIC)
    assert "metric arrival_rate for queue emails is infinite" in held.reason


def test_the_drain_estimate_divides_by_the_ready_workers_the_operator_saw() -> None:
    # emails: 4 replicas, 2 ready, completing 2 tasks/s while 300 wait; arrivals 0.5/s.
    s = samples(emails=(300.0, 4.0))
    s[worker_target("emails")][COMPLETION_RATE] = (2.0, NOW)
    name = worker_target("emails")
    waited = {name: {"backlogSince": NOW - 60}}  # tasks waited for the completion rate's whole minute
    by_ready = decide(full_spec(), {**OBSERVED, name: ObservedTarget(4, ready=2)}, s, waited, NOW).targets[
        name
    ]
    assert by_ready.metrics["per_worker_rate"] == 1.0  # 2 tasks/s over the 2 ready workers
    # Without readyReplicas (read through /scale) the replicas stand in, as before.
    unknown = decide(full_spec(), {**OBSERVED, name: ObservedTarget(4)}, s, waited, NOW).targets[name]
    assert unknown.metrics["per_worker_rate"] == 0.5
    # The backlog clock goes on in the history the operator stores.
    assert by_ready.history.backlog_since == NOW - 60
    assert decide(full_spec(), OBSERVED, s, {}, NOW).targets[name].history.backlog_since == NOW


def test_connection_budget_cuts_workers_first_then_web() -> None:
    budget = {"maxConnections": 200, "webPoolSize": 10, "workerPoolSize": 5, "reserved": 20}
    load = samples(rate=800, video=(300, 4), emails=(200, 2))
    # Unconstrained (HPA default rates: +max(100%, 4 pods) per 15 s): web 4 -> 8,
    # video 4 -> 8, emails 1 -> 5.
    free = decide(full_spec(), OBSERVED, load, {}, NOW)
    assert [free.targets[n].desired for n in (WEB, "worker/video", "worker/emails")] == [8, 8, 5]
    # 8*10 + 13*5 + 20 = 165 fits 200: nothing cut.
    d = decide(full_spec(connectionBudget=budget), OBSERVED, load, {}, NOW)
    assert d.connections is not None and d.connections.total == 165 and d.connections.fits
    assert [d.targets[n].desired for n in (WEB, "worker/video", "worker/emails")] == [8, 8, 5]
    assert d.web_max_by_budget == 11  # (200 - 20 - 13*5) // 10
    # With 110 the workers give up all their scale-ups (video 8 -> 4, emails 5 -> 1: 125),
    # then web gives up two of its four (8 -> 6: 105).
    d = decide(full_spec(connectionBudget={**budget, "maxConnections": 110}), OBSERVED, load, {}, NOW)
    video, emails, web = d.targets["worker/video"], d.targets["worker/emails"], d.targets[WEB]
    assert (video.desired, video.limited_by) == (4, LimitedBy.CONNECTION_BUDGET)
    assert (emails.desired, emails.limited_by) == (1, LimitedBy.CONNECTION_BUDGET)
    assert (web.desired, web.limited_by) == (6, LimitedBy.CONNECTION_BUDGET)
    assert "connections 165 > maxConnections 110" in web.reason
    assert d.connections is not None and d.connections.total == 105
    # The stored scale event is the cut one.
    assert web.history.scale_up_events[-1].change == 2
    assert video.history.scale_up_events == ()
    # With 130 only the workers are cut, alternating from the largest remaining scale-up
    # (ties: the later queue first) until it fits: emails 5,4 / video 7 / emails 3 / ...
    d = decide(full_spec(connectionBudget={**budget, "maxConnections": 130}), OBSERVED, load, {}, NOW)
    assert [d.targets[n].desired for n in (WEB, "worker/video", "worker/emails")] == [8, 5, 1]


def test_connection_budget_counts_running_web_pods_not_the_floor() -> None:
    # The operator passes the HPA floor (4) as web's replicas; 12 pods actually run on cpu.
    budget = {"maxConnections": 250, "webPoolSize": 10, "workerPoolSize": 5, "reserved": 20}
    observed = {**OBSERVED, WEB: ObservedTarget(4, running=12)}
    # emails' tasks have waited for the completion rate's whole minute: its drain estimate counts (2).
    waited = {"worker/emails": {"backlogSince": NOW - 60}}
    d = decide(full_spec(connectionBudget=budget), observed, samples(rate=800, video=(300, 4)), waited, NOW)
    # Raising the floor to 8 adds no web pods (12 run already): 120 + (8 + 2)*5 + 20 = 190.
    assert d.connections is not None and d.connections.web_pods == 12 and d.connections.total == 190
    tight = full_spec(connectionBudget={**budget, "maxConnections": 170})
    d = decide(tight, observed, samples(rate=800, video=(300, 4)), waited, NOW)
    # Only the workers can give back connections here: video 8 -> 5, emails 2 -> 1 (170);
    # the web floor costs nothing and stays raised.
    assert d.targets["worker/video"].desired == 5
    assert d.targets["worker/emails"].desired == 1
    assert d.targets[WEB].desired == 8


def test_connection_budget_never_forces_scale_down() -> None:
    budget = {"maxConnections": 60, "webPoolSize": 10, "workerPoolSize": 5, "reserved": 0}
    d = decide(full_spec(connectionBudget=budget), OBSERVED, samples(rate=800, video=(300, 4)), {}, NOW)
    assert d.targets[WEB].desired == 4
    assert d.targets["worker/video"].desired == 4
    # 4*10 + (4 + 1)*5 = 65 already, before any scale-up.
    assert d.notes == ("connection budget exceeded even without scale-ups: 65 > maxConnections 60",)


invalid_values = st.sampled_from([None, math.nan, math.inf, -math.inf, -1.0, "stale", "absent"])


@MANY
@given(
    st.dictionaries(
        st.sampled_from(
            [
                (WEB, REQUEST_RATE),
                ("worker/video", WAITING),
                ("worker/video", IN_FLIGHT),
                ("worker/emails", WAITING),
                ("worker/emails", IN_FLIGHT),
                ("worker/emails", ARRIVAL_RATE),
                ("worker/emails", COMPLETION_RATE),
                (READ_REPLICAS, READ_LOAD),
            ]
        ),
        invalid_values,
        min_size=1,
    ),
    st.floats(0, 3000),
    st.floats(0, 1000),
    st.floats(0, 1000),
    st.floats(0, 2000),
    st.fixed_dictionaries({n: st.integers(0, 45) for n in OBSERVED}),
)
def test_invalid_metrics_never_scale_down(
    broken: dict[tuple[str, str], object],
    rate: float,
    video: float,
    emails: float,
    load: float,
    observed: dict[str, int],
) -> None:
    s = samples(rate=rate, video=(video, 3.0), emails=(emails, 1.0), load=load)
    for (target, metric), value in broken.items():
        if value == "absent":
            del s[target][metric]
        elif value == "stale":
            s[target][metric] = (5.0, NOW - 3600)
        else:
            s[target][metric] = (value, NOW)
    spec = full_spec()
    d = decide(spec, observed, s, {}, NOW)
    bounds = {
        WEB: (2, 30),
        "worker/video": (0, 40),
        "worker/emails": (1, 20),
        READ_REPLICAS: (1, 6),
    }
    hit = {target for target, _ in broken}
    for name, decision in d.targets.items():
        lo, hi = bounds[name]
        assert lo <= decision.desired <= hi
        current = observed[name]
        if name in hit and lo <= current <= hi:
            assert decision.desired >= current, decision.reason
            if decision.limited_by is LimitedBy.MISSING_METRIC:
                assert f"for {'queue ' + name.split('/')[1] if '/' in name else name}" in decision.reason


@MANY
@given(
    st.floats(0, 3000),
    st.floats(0, 3000),
    st.tuples(st.floats(0, 500), st.floats(0, 500)),
    st.fixed_dictionaries({n: st.integers(0, 45) for n in OBSERVED}),
)
def test_policy_more_load_never_fewer_replicas_and_deterministic(
    r1: float, r2: float, waiting: tuple[float, float], observed: dict[str, int]
) -> None:
    spec = full_spec()
    low = decide(
        spec, observed, samples(rate=min(r1, r2), video=(min(waiting), 2.0), load=min(r1, r2)), {}, NOW
    )
    high = decide(
        spec, observed, samples(rate=max(r1, r2), video=(max(waiting), 2.0), load=max(r1, r2)), {}, NOW
    )
    for name in (WEB, "worker/video", READ_REPLICAS):
        assert low.targets[name].desired <= high.targets[name].desired
    again = decide(
        spec, observed, samples(rate=min(r1, r2), video=(min(waiting), 2.0), load=min(r1, r2)), {}, NOW
    )
    assert again == low
