"""How fast a target may scale: the autoscaling/v2 HPA behavior (rules per direction, their rate policies
and defaults), plus the tolerance and delays the operator adds."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import ConfigDict, Field, StrictFloat, StrictInt, field_validator, model_validator

from .base import INT32_MAX, MAX_POLICIES, _Spec, cel
from .errors import cross_field_error

PERCENT_MAX_SCALE_UP = 1000
PERCENT_MAX_SCALE_DOWN = 100


class SelectPolicy(StrEnum):
    """How the allowed change of several policies is combined (Kubernetes HPA semantics)."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class PolicyType(StrEnum):
    """The unit of a scaling policy's value."""

    PODS = "Pods"
    PERCENT = "Percent"


class HPAScalingPolicy(_Spec):
    """One limit on how fast replicas may change, as in an autoscaling/v2 HPAScalingPolicy."""

    type: PolicyType = Field(
        description="Pods: value is a number of replicas. Percent: value is a percentage of the "
        "current replicas."
    )
    value: StrictInt = Field(
        ge=1,
        le=INT32_MAX,
        description="The allowed change within periodSeconds: replicas (type Pods) or percent of the "
        f"current replicas (type Percent: at most {PERCENT_MAX_SCALE_UP} in scaleUp, "
        f"{PERCENT_MAX_SCALE_DOWN} in scaleDown).",
    )
    period_seconds: StrictInt = Field(
        ge=1,
        le=1800,
        description="The window, in seconds, over which the change is counted (1..1800).",
    )


def _percent_rule(limit: int) -> tuple[str, str, str]:
    return (
        f"!has(self.policies) || self.policies.all(p, p.type != 'Percent' || p.value <= {limit})",
        f"{{path}}.policies[].value must be <= {limit} when type is Percent",
        ".policies",
    )


class HPAScalingRules(_Spec):
    """Scaling rules for one direction; the fields and their meaning are those of autoscaling/v2."""

    # Kubernetes lets scale-up percentages exceed 100 (doubling and more) but a
    # scale-down cannot remove more than all replicas; each direction sets its own.
    percent_max: ClassVar[int] = PERCENT_MAX_SCALE_UP

    stabilization_window_seconds: StrictInt = Field(
        ge=0,
        le=3600,
        description="How many seconds of past recommendations are considered; the most "
        "conservative one is used, which stops flapping.",
    )
    select_policy: SelectPolicy = Field(
        default=SelectPolicy.MAX,
        description="Max picks the policy allowing the largest change, Min the smallest; Disabled "
        "forbids changes in this direction.",
    )
    policies: Sequence[HPAScalingPolicy] = Field(
        min_length=1,
        max_length=MAX_POLICIES,
        description="Limits on the change per period; combined according to selectPolicy.",
    )

    @field_validator("policies", mode="after")
    @classmethod
    def _as_tuple(cls, policies: Sequence[HPAScalingPolicy]) -> tuple[HPAScalingPolicy, ...]:
        # Validated as a sequence (a list's errors read better than a tuple's) but kept immutable, as the
        # shared defaults are.
        return tuple(policies)

    @model_validator(mode="after")
    def _percent_bound(self) -> HPAScalingRules:
        for i, policy in enumerate(self.policies):
            if policy.type is PolicyType.PERCENT and policy.value > self.percent_max:
                raise cross_field_error(
                    f"policies[{i}].value",
                    f"policies[{i}].value must be <= {self.percent_max} when type is Percent "
                    f"(got {policy.value})",
                )
        return self


# The defaults are shared by every model that omits them, through a default_factory: its value is used as
# it is, where a `default` would be deep-copied into every instance.
_DEFAULT_SCALE_UP_POLICIES = (
    HPAScalingPolicy(type=PolicyType.PERCENT, value=100, period_seconds=15),
    HPAScalingPolicy(type=PolicyType.PODS, value=4, period_seconds=15),
)
_DEFAULT_SCALE_DOWN_POLICIES = (HPAScalingPolicy(type=PolicyType.PERCENT, value=100, period_seconds=15),)


class ScaleUpRules(HPAScalingRules):
    """Rules for adding replicas. Missing fields take the Kubernetes HPA defaults: window 0,
    policies [Percent 100 per 15s, Pods 4 per 15s], selectPolicy Max. Percent may exceed 100 here."""

    model_config = ConfigDict(json_schema_extra=cel(_percent_rule(PERCENT_MAX_SCALE_UP)))
    percent_max: ClassVar[int] = PERCENT_MAX_SCALE_UP

    stabilization_window_seconds: StrictInt = Field(
        default=0,
        ge=0,
        le=3600,
        description="How many seconds of past recommendations are considered before scaling up; "
        "the lowest is used (default 0: scale up at once).",
    )
    policies: Sequence[HPAScalingPolicy] = Field(
        default_factory=lambda: _DEFAULT_SCALE_UP_POLICIES,
        # default_factory is invisible to the JSON schema; the CRD should default it too.
        json_schema_extra={
            "default": [
                {"type": "Percent", "value": 100, "periodSeconds": 15},
                {"type": "Pods", "value": 4, "periodSeconds": 15},
            ]
        },
        min_length=1,
        max_length=MAX_POLICIES,
        description="Limits on replicas added per period (default: Percent 100 per 15s and Pods 4 "
        "per 15s, the larger wins with selectPolicy Max).",
    )


class ScaleDownRules(HPAScalingRules):
    """Rules for removing replicas. Missing fields take the Kubernetes HPA defaults: window 300,
    policies [Percent 100 per 15s], selectPolicy Max. Percent is at most 100."""

    model_config = ConfigDict(json_schema_extra=cel(_percent_rule(PERCENT_MAX_SCALE_DOWN)))
    percent_max: ClassVar[int] = PERCENT_MAX_SCALE_DOWN

    stabilization_window_seconds: StrictInt = Field(
        default=300,
        ge=0,
        le=3600,
        description="How many seconds of past recommendations are considered before scaling down; "
        "the highest is used (default 300).",
    )
    policies: Sequence[HPAScalingPolicy] = Field(
        default_factory=lambda: _DEFAULT_SCALE_DOWN_POLICIES,
        json_schema_extra={"default": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
        min_length=1,
        max_length=MAX_POLICIES,
        description="Limits on replicas removed per period (default: Percent 100 per 15s).",
    )


_DEFAULT_SCALE_UP = ScaleUpRules()
_DEFAULT_SCALE_DOWN = ScaleDownRules()


class Behavior(_Spec):
    """How fast a target may scale, with Kubernetes autoscaling/v2 HPA semantics, plus a
    tolerance and optional delays. Omitted parts take the HPA defaults field by field."""

    scale_up: ScaleUpRules = Field(
        default_factory=lambda: _DEFAULT_SCALE_UP,
        description="Rules for scaling up (HPA defaults: window 0, Percent 100/15s and Pods 4/15s, Max).",
    )
    scale_down: ScaleDownRules = Field(
        default_factory=lambda: _DEFAULT_SCALE_DOWN,
        description="Rules for scaling down (HPA defaults: window 300, Percent 100/15s, Max).",
    )
    tolerance: StrictFloat = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Relative deviation of the metric from its target that is ignored (0..1, "
        "default 0.1, as the HPA's 10%).",
    )
    scale_down_delay_seconds: StrictInt | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Extra seconds to wait after a scale-up of this target before any scale-down.",
    )
    cooldown_seconds: StrictInt | None = Field(
        default=None,
        ge=0,
        le=3600,
        description="Minimum seconds between two replica changes of this target.",
    )

    def hpa_behavior(self) -> dict[str, Any]:
        """The ``behavior`` block of an autoscaling/v2 HPA (only the fields the HPA knows)."""
        hpa_fields = {"stabilization_window_seconds", "select_policy", "policies"}
        return {
            "scaleUp": self.scale_up.model_dump(by_alias=True, mode="json", include=hpa_fields),
            "scaleDown": self.scale_down.model_dump(by_alias=True, mode="json", include=hpa_fields),
        }


_DEFAULT_BEHAVIOR = Behavior()


def default_behavior() -> Behavior:
    """The behavior of a target whose spec omits it: one shared (frozen) instance."""
    return _DEFAULT_BEHAVIOR
