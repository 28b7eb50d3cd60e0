"""The ScalingPolicy pydantic model: validation, defaults, error paths, round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError

from scalekeeper.kube.owners import OwnerRef
from scalekeeper.model import (
    Behavior,
    ConditionStatus,
    ConditionType,
    LimitedBy,
    Mode,
    PolicyType,
    ScaleDownRules,
    ScaleUpRules,
    ScalingPolicySpec,
    ScalingPolicyStatus,
    SelectPolicy,
    SpecError,
    TargetStatus,
    WorkerSpec,
    error_messages,
    error_paths,
    parse_spec,
)
from scalekeeper.tiers import tiers_of
from scalekeeper.tiers.workers import worker_params, worker_queries
from tests.invalid_specs import INVALID_CASES
from tests.unit.spec_strategies import specs
from tests.valid_specs import FULL, VALID_SPECS, WEB_ONLY

POD = {"spec": {"containers": [{"name": "worker", "image": "app"}]}}


def _dump(spec: ScalingPolicySpec) -> dict[str, Any]:
    return spec.model_dump(by_alias=True, exclude_none=True, mode="json")


# ------------------------------------------------------------------ the table


def test_table_is_big_enough() -> None:
    assert len(INVALID_CASES) >= 35
    assert len({case for case, *_ in INVALID_CASES}) == len(INVALID_CASES)
    kinds = {kind for *_, kind in INVALID_CASES}
    assert kinds == {"schema", "unknown-field", "cel"}


@pytest.mark.parametrize(
    ("case", "spec", "expected", "kind"), INVALID_CASES, ids=[c[0] for c in INVALID_CASES]
)
def test_invalid_spec_rejected_naming_field(
    case: str, spec: dict[str, Any], expected: str, kind: str
) -> None:
    with pytest.raises(ValidationError) as info:
        ScalingPolicySpec.model_validate(spec)
    messages = error_messages(info.value)
    # One broken rule per case: more errors would mean the case tests two things.
    assert len(messages) == 1, messages
    assert expected in messages[0], messages


@pytest.mark.parametrize(("case", "spec"), VALID_SPECS, ids=[c[0] for c in VALID_SPECS])
def test_valid_spec_accepted(case: str, spec: dict[str, Any]) -> None:
    parsed = ScalingPolicySpec.model_validate(spec)
    again = ScalingPolicySpec.model_validate(_dump(parsed))
    assert again == parsed


def test_parse_spec_raises_spec_error_with_paths() -> None:
    bad = {"web": {"deployment": "web", "maxReplicas": 3, "cpuUtilization": 70, "minReplicas": 4}}
    with pytest.raises(SpecError) as info:
        parse_spec(bad)
    assert info.value.messages == ["spec.web.minReplicas: minReplicas (4) must be <= maxReplicas (3)"]


def test_error_paths_render_list_indices() -> None:
    spec = {
        "workers": [
            {"queue": "a", "deployment": "a", "maxReplicas": 1, "tasksPerWorker": 1},
            {"queue": "b", "deployment": "b", "maxReplicas": 0, "tasksPerWorker": 1},
        ]
    }
    with pytest.raises(ValidationError) as info:
        ScalingPolicySpec.model_validate(spec)
    assert error_paths(info.value) == ["spec.workers[1].maxReplicas"]


def test_snake_case_names_are_accepted_too() -> None:
    spec = ScalingPolicySpec.model_validate(
        {"web": {"deployment": "web", "max_replicas": 4, "cpu_utilization": 50}, "interval_seconds": 9}
    )
    assert spec.web is not None and spec.web.max_replicas == 4
    assert spec.interval_seconds == 9


# ------------------------------------------------------------------- defaults


def test_top_level_defaults() -> None:
    spec = ScalingPolicySpec.model_validate(WEB_ONLY)
    assert spec.mode is Mode.ENFORCE
    assert spec.interval_seconds == 5
    assert spec.web is not None and spec.web.min_replicas == 1


def test_hpa_default_behavior() -> None:
    b = ScalingPolicySpec.model_validate(WEB_ONLY).web.behavior  # type: ignore[union-attr]
    up, down = b.scale_up, b.scale_down
    assert up.stabilization_window_seconds == 0
    assert up.select_policy is SelectPolicy.MAX
    assert [(p.type, p.value, p.period_seconds) for p in up.policies] == [
        (PolicyType.PERCENT, 100, 15),
        (PolicyType.PODS, 4, 15),
    ]
    assert down.stabilization_window_seconds == 300
    assert down.select_policy is SelectPolicy.MAX
    assert [(p.type, p.value, p.period_seconds) for p in down.policies] == [(PolicyType.PERCENT, 100, 15)]
    assert b.tolerance == 0.1
    assert b.scale_down_delay_seconds is None and b.cooldown_seconds is None


def test_partial_behavior_fills_only_missing_fields() -> None:
    # As the HPA does: a given scaleDown keeps its own fields and takes the defaults for the rest,
    # and the untouched direction gets all its defaults.
    b = Behavior.model_validate({"scaleDown": {"stabilizationWindowSeconds": 60}})
    assert b.scale_down.stabilization_window_seconds == 60
    assert b.scale_down.select_policy is SelectPolicy.MAX
    assert [(p.type, p.value) for p in b.scale_down.policies] == [(PolicyType.PERCENT, 100)]
    assert b.scale_up == ScaleUpRules()

    b = Behavior.model_validate(
        {"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}, "tolerance": 0}
    )
    assert b.scale_up.stabilization_window_seconds == 0
    assert b.scale_up.select_policy is SelectPolicy.MAX
    assert [(p.type, p.value, p.period_seconds) for p in b.scale_up.policies] == [(PolicyType.PODS, 1, 60)]
    assert b.scale_down == ScaleDownRules()
    assert b.tolerance == 0

    b = Behavior.model_validate({"scaleUp": {"selectPolicy": "Disabled"}})
    assert b.scale_up.select_policy is SelectPolicy.DISABLED
    assert len(b.scale_up.policies) == 2


def test_omitted_behaviors_share_one_instance_no_one_can_change() -> None:
    spec = ScalingPolicySpec.model_validate(
        {
            "web": {"deployment": "web", "maxReplicas": 3, "cpuUtilization": 70},
            "workers": [{"queue": "q", "deployment": "w", "maxReplicas": 2, "tasksPerWorker": 5}],
        }
    )
    assert spec.web is not None and spec.workers is not None
    shared = spec.web.behavior
    assert shared is spec.workers[0].behavior
    assert Behavior.model_validate({"tolerance": 0.2}).scale_up is shared.scale_up
    with pytest.raises(ValidationError):
        shared.tolerance = 0.5
    assert isinstance(shared.scale_up.policies, tuple) and len(shared.scale_up.policies) == 2


def test_hpa_behavior_block_has_only_hpa_fields() -> None:
    b = Behavior.model_validate({"scaleDown": {"stabilizationWindowSeconds": 60}, "cooldownSeconds": 5})
    assert b.hpa_behavior() == {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15},
                {"type": "Pods", "value": 4, "periodSeconds": 15},
            ],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 60,
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
    }


def test_percent_bounds_differ_by_direction() -> None:
    assert ScaleUpRules.model_validate({"policies": [{"type": "Percent", "value": 900, "periodSeconds": 15}]})
    with pytest.raises(ValidationError):
        ScaleDownRules.model_validate({"policies": [{"type": "Percent", "value": 101, "periodSeconds": 15}]})
    # Pods values are not percentages and have no such bound.
    assert ScaleDownRules.model_validate({"policies": [{"type": "Pods", "value": 500, "periodSeconds": 15}]})


def test_worker_defaults_and_queries() -> None:
    w = WorkerSpec.model_validate(
        {"queue": "video", "deployment": "vw", "maxReplicas": 3, "tasksPerWorker": 4}
    )
    assert (w.min_replicas, w.activation_tasks, w.concurrency, w.prefetch_multiplier) == (0, 1, 1, 4)
    assert w.cooldown_seconds == 300
    assert w.slots_per_pod == 4
    q = worker_queries(w, "shop")
    assert q.waiting == 'celery_queue_waiting_tasks{app="shop",queue="video"}'
    assert q.in_flight == 'celery_queue_inflight_tasks{app="shop",queue="video"}'
    assert q.arrival_rate == 'rate(celery_queue_published_total{app="shop",queue="video"}[1m])'
    assert q.completion_rate == 'rate(celery_queue_completed_total{app="shop",queue="video"}[1m])'


def test_worker_query_overrides_and_escaping() -> None:
    w = WorkerSpec.model_validate(
        {
            "queue": 'we"ird',
            "template": POD,
            "maxReplicas": 3,
            "drainSeconds": 60,
            "metrics": {"waiting": 'sum(my_backlog{q="<queue>"})'},
        }
    )
    q = worker_queries(w, "shop")
    assert q.waiting == 'sum(my_backlog{q="we\\"ird"})'
    assert q.in_flight == 'celery_queue_inflight_tasks{app="shop",queue="we\\"ird"}'


def test_the_completion_rate_window_is_the_query_range() -> None:
    def window(completion: str | None) -> float:
        metrics = {"completionRate": completion} if completion else {}
        data = {"queue": "v", "deployment": "vw", "maxReplicas": 1, "drainSeconds": 60, "metrics": metrics}
        worker = WorkerSpec.model_validate(data)
        return worker_params(worker).rate_window_seconds

    assert window(None) == 60  # the default query's [1m]
    assert window('sum(rate(done_total{q="<queue>"}[5m]))') == 300
    assert window("rate(done_total[1m30s]) + rate(other[30s])") == 90  # the longest range
    assert window("max_over_time(rate(done_total[1m])[10m:30s])") == 600  # a subquery's range
    assert window("queue:completed:rate2m") == 60  # no range to read: the default


def test_worker_deployment_name() -> None:
    own = WorkerSpec.model_validate({"queue": "v", "deployment": "vw", "maxReplicas": 1, "tasksPerWorker": 1})
    assert own.deployment_name("shop") == "vw"
    made = WorkerSpec.model_validate(
        {"queue": "Video_HQ", "template": POD, "maxReplicas": 1, "tasksPerWorker": 1}
    )
    assert made.deployment_name("shop") == "shop-worker-video-hq"


def test_read_replica_floor_defaults_to_min() -> None:
    spec = ScalingPolicySpec.model_validate(FULL)
    assert spec.read_replicas is not None
    assert spec.read_replicas.effective_floor == 2
    spec = ScalingPolicySpec.model_validate({"readReplicas": {**FULL["readReplicas"], "floor": None}})
    assert spec.read_replicas is not None and spec.read_replicas.effective_floor == 1


def test_target_names() -> None:
    spec = ScalingPolicySpec.model_validate(FULL)
    assert [tier.name for tier in tiers_of(spec, OwnerRef("ns", "p", "uid"))] == [
        "web",
        "worker/video",
        "worker/emails",
        "worker/reports",
        "readReplicas",
    ]


def test_template_is_kept_verbatim() -> None:
    spec = ScalingPolicySpec.model_validate(FULL)
    assert spec.workers is not None
    assert _dump(spec)["workers"][1]["template"] == FULL["workers"][1]["template"]


# --------------------------------------------------------------------- status


def test_status_serialises_for_a_patch() -> None:
    status = ScalingPolicyStatus(observed_generation=3, web="2/4")
    t0 = datetime(2026, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    status.set_condition(ConditionType.READY, ConditionStatus.TRUE, "Scaled", "all targets sized", now=t0)
    status.targets.append(
        TargetStatus(
            name="worker/video",
            kind="Deployment",
            target_ref="video-worker",
            current_replicas=3,
            desired_replicas=5,
            limited_by=LimitedBy.SCALE_UP_POLICY,
            reason="scale-up policy allows +2 per 15s",
            metrics={"waiting": 120.0, "inFlight": 12},
            last_decision_time=t0,
        )
    )
    patch = status.to_patch()
    assert patch == {
        "observedGeneration": 3,
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Scaled",
                "message": "all targets sized",
                "lastTransitionTime": "2026-01-02T03:04:05Z",
            }
        ],
        "targets": [
            {
                "name": "worker/video",
                "kind": "Deployment",
                "targetRef": "video-worker",
                "currentReplicas": 3,
                "desiredReplicas": 5,
                "limitedBy": "scaleUpPolicy",
                "reason": "scale-up policy allows +2 per 15s",
                "metrics": {"waiting": 120.0, "inFlight": 12.0},
                "lastDecisionTime": "2026-01-02T03:04:05Z",
            }
        ],
        "web": "2/4",
        "ready": "True",
    }
    assert ScalingPolicyStatus.model_validate(patch).to_patch() == patch


def test_condition_transition_time_moves_only_on_status_change() -> None:
    status = ScalingPolicyStatus()
    t0, t1 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    status.set_condition(ConditionType.METRICS_AVAILABLE, ConditionStatus.TRUE, "Ok", "", now=t0)
    status.set_condition(ConditionType.METRICS_AVAILABLE, ConditionStatus.TRUE, "StillOk", "x", now=t1)
    cond = status.condition(ConditionType.METRICS_AVAILABLE)
    assert cond is not None and cond.last_transition_time == t0 and cond.reason == "StillOk"
    status.set_condition(ConditionType.METRICS_AVAILABLE, ConditionStatus.FALSE, "NoData", "", now=t1)
    cond = status.condition(ConditionType.METRICS_AVAILABLE)
    assert cond is not None and cond.last_transition_time == t1
    assert len(status.conditions) == 1


def test_status_ignores_unknown_fields() -> None:
    # kopf keeps its own bookkeeping under status.
    assert ScalingPolicyStatus.model_validate({"kopf": {"progress": {}}, "ready": "False"}).ready == "False"


# ------------------------------------------------------- property: round trip


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_round_trip_through_camel_case_dump(raw: dict[str, Any]) -> None:
    spec = ScalingPolicySpec.model_validate(raw)
    dumped = _dump(spec)
    again = ScalingPolicySpec.model_validate(dumped)
    assert again == spec
    assert _dump(again) == dumped
    # Nothing the user wrote is lost: every given field is in the dump with its value.
    _assert_contains(dumped, raw)


def _assert_contains(dumped: Any, given_: Any) -> None:
    if isinstance(given_, dict):
        for key, value in given_.items():
            assert key in dumped
            _assert_contains(dumped[key], value)
    elif isinstance(given_, list):
        assert len(dumped) == len(given_)
        for d, g in zip(dumped, given_, strict=True):
            _assert_contains(d, g)
    else:
        assert dumped == given_
