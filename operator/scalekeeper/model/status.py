"""The ScalingPolicy status: what the operator observed and decided, with its conditions."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, PlainSerializer

from .base import _Status


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    READY = "Ready"
    METRICS_AVAILABLE = "MetricsAvailable"
    SCALING_LIMITED = "ScalingLimited"
    CONFLICT = "Conflict"
    SPEC_VALID = "SpecValid"
    # Only on a policy with a worker whose busy workers are protected (protectBusyWorkers).
    BUSY_WORKERS_PROTECTED = "BusyWorkersProtected"
    BOTTLENECK = "Bottleneck"


# A condition's type as metav1.Condition takes it: the CRD holds no list of our types, so an operator that
# adds one can write its status before its CRD is upgraded (helm does not upgrade CRDs).
CONDITION_TYPE_PATTERN = r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$"


class LimitedBy(StrEnum):
    """What bounded the last decision for a target (``none`` when the metric decided alone)."""

    NONE = "none"
    MIN = "min"
    MAX = "max"
    FLOOR = "floor"
    SCALE_UP_POLICY = "scaleUpPolicy"
    SCALE_DOWN_POLICY = "scaleDownPolicy"
    STABILIZATION = "stabilization"
    TOLERANCE = "tolerance"
    CONNECTION_BUDGET = "connectionBudget"
    MISSING_METRIC = "missingMetric"
    ACTIVATION = "activation"
    COOLDOWN = "cooldown"
    CONFLICT = "conflict"
    DRY_RUN = "dryRun"
    FORECAST = "forecast"


def _rfc3339(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# Kubernetes writes times as RFC 3339 in UTC with second precision.
Timestamp = Annotated[datetime, PlainSerializer(_rfc3339, return_type=str, when_used="json")]


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Condition(_Status):
    """A standard Kubernetes condition."""

    type: str = Field(
        max_length=316,
        pattern=CONDITION_TYPE_PATTERN,
        description="Ready, MetricsAvailable, ScalingLimited, Conflict, SpecValid, BusyWorkersProtected or "
        "Bottleneck; a newer operator may add types.",
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="A CamelCase reason for the last transition.")
    message: str = Field(default="", description="A human readable explanation.")
    last_transition_time: Timestamp | None = Field(default=None, description="When the status last changed.")


class TargetStatus(_Status):
    """The last decision for one target."""

    name: str = Field(description="web, worker/<queue> or readReplicas.")
    kind: str = Field(default="", description="Kind of the scaled object.")
    target_ref: str = Field(default="", description="Name of the scaled object.")
    current_replicas: int | None = Field(default=None, description="Replicas observed.")
    desired_replicas: int | None = Field(default=None, description="Replicas decided.")
    limited_by: LimitedBy = Field(
        default=LimitedBy.NONE, description="What bounded the decision; none if the metric decided alone."
    )
    reason: str = Field(default="", description="One line explaining the decision.")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Metric values used for the decision, by name."
    )
    last_scale_time: Timestamp | None = Field(
        default=None,
        description="When the replicas were last changed.",
    )
    last_decision_time: Timestamp | None = Field(
        default=None,
        description="When the last decision was made.",
    )
    history: dict[str, Any] | None = Field(
        default=None,
        description="The engine's scale events and recommendations as of the last replica change, so that "
        "a restarted operator keeps counting changes against the rate policies' periods.",
    )


class BottleneckStatus(_Status):
    """A tier saturated for a while (see the Bottleneck condition)."""

    name: str = Field(description="The target (web, worker/<queue>, readReplicas), or connections.")
    reason: str = Field(description="A CamelCase reason: what saturates it.")
    message: str = Field(default="", description="Every signal holding, in one line.")
    since: Timestamp | None = Field(default=None, description="When the episode started.")


class Verification(_Status):
    """The server-side dry-run of every object the operator will create or patch, made once per spec
    generation."""

    generation: int = Field(description="The spec generation checked.")
    refused: dict[str, str] = Field(
        default_factory=dict, description="Per target, what the API server refused, with the field."
    )
    unverified: list[str] = Field(
        default_factory=list, description="Objects the API server could not dry-run (not refusals)."
    )


class ScalingPolicyStatus(_Status):
    """What the operator observed and decided."""

    observed_generation: int | None = Field(
        default=None, description="The spec generation the status describes."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, MetricsAvailable, ScalingLimited, Conflict, SpecValid, BusyWorkersProtected and "
        "Bottleneck conditions.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    targets: list[TargetStatus] = Field(
        default_factory=list,
        description="The last decision per target.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    web: str | None = Field(default=None, description="Web replicas as current/desired.")
    workers: str | None = Field(
        default=None, description="Worker replicas per queue, e.g. 'video 3/5, emails 1/1'."
    )
    read_replicas: str | None = Field(default=None, description="Read replicas as current/desired.")
    ready: str | None = Field(default=None, description="The Ready condition's status, for printing.")
    # Written as "none" and [] rather than left out: a merge patch leaves out what it does not name.
    bottleneck: str | None = Field(
        default=None, description="The targets in a bottleneck episode, for printing; none when none."
    )
    bottlenecks: list[BottleneckStatus] | None = Field(
        default=None,
        description="The targets in a bottleneck episode, with why and since when.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    verification: Verification | None = Field(
        default=None, description="What a server-side dry-run said of the objects this spec makes."
    )
    served_by: str | None = Field(
        default=None,
        max_length=253,
        description="The operator replica serving this policy (its pod name); empty while the policy is "
        "handed over to another replica.",
    )

    def condition(self, type_: ConditionType) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)

    def set_condition(
        self,
        type_: ConditionType,
        status: ConditionStatus,
        reason: str,
        message: str,
        now: datetime | None = None,
    ) -> None:
        """Set a condition, moving lastTransitionTime only when the status changes."""
        old = self.condition(type_)
        when = now or utcnow()
        if old is not None and old.status == status:
            old.reason, old.message = reason, message
            return
        new = Condition(
            type=str(type_), status=status, reason=reason, message=message, last_transition_time=when
        )
        self.conditions = [c for c in self.conditions if c.type != type_] + [new]
        if type_ is ConditionType.READY:
            self.ready = status.value

    def to_patch(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")
