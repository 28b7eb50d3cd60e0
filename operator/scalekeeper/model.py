"""The ScalingPolicy custom resource: spec and status as pydantic models.

This module is the single source of truth for the resource's shape. The CRD in
``crds/`` is generated from it by :mod:`scalekeeper.crdgen`, so every bound,
default and description written here is what the API server enforces and what
``kubectl explain`` shows. Cross-field rules are written twice: once as pydantic
validators (used by the operator and the tests) and once as CEL rules attached
through ``json_schema_extra`` (used by the API server); the messages name the
same fields so that both report the same problem the same way.

CEL messages may contain ``{path}``; crdgen replaces it with the schema path of
the object the rule sits on (``spec.web``, ``spec.workers[]`` ...), because one
model (``Behavior``) is used at several places of the spec.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from .kube.names import fitted
from .metrics.presets import PRESETS, Preset

GROUP = "scalekeeper.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ScalingPolicy"
LIST_KIND = "ScalingPolicyList"
PLURAL = "scalingpolicies"
SINGULAR = "scalingpolicy"
SHORT_NAMES = ("sp",)
CRD_NAME = f"{PLURAL}.{GROUP}"

MAX_WORKERS = 50
MAX_POLICIES = 10
# Bounded lengths keep the API server's CEL cost estimate low: string
# comparisons are costed by their maximum length.
MAX_NAME_LENGTH = 253
MAX_QUEUE_LENGTH = 200
MAX_QUERY_LENGTH = 4096

# A DNS-1123 label: a container's name.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# A Deployment's ReplicaSets are named `<deployment>-<10-character hash>`, within the 253 a name may have.
GENERATED_NAME_MAX = MAX_NAME_LENGTH - 11

# A DNS-1123 subdomain, the rule for Deployment and most object names.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
REPLICAS_PATH_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"

# Every count lands in an int32 field somewhere (an HPA's or a Deployment's replicas): no larger one is taken.
INT32_MAX = 2**31 - 1
# An apiVersion: a version, with a DNS-subdomain group before it unless it is the core group's.
API_VERSION_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?$"
)
# At least one character that is not white space: a query of blanks is no query. Spelled out rather than
# \S, whose meaning differs between the API server's regular expressions (Go's) and pydantic's (Rust's).
NOT_BLANK_PATTERN = r"[^\t\n\f\r ]"

PERCENT_MAX_SCALE_UP = 1000
FORECAST_MAX_SEASON_SECONDS = 28 * 86400
PERCENT_MAX_SCALE_DOWN = 100


def cel(*rules: tuple[str, str] | tuple[str, str, str] | tuple[str, str, str, str]) -> dict[str, Any]:
    """Build the ``json_schema_extra`` that carries CEL rules for crdgen.

    Each rule is ``(expression, message[, fieldPath[, reason]])``. The fieldPath
    names the same field as the matching pydantic validator's ``cross_field_error``,
    so the API server and the operator point at the same field.
    """
    out: list[dict[str, str]] = []
    for rule in rules:
        entry = {"rule": rule[0], "message": rule[1]}
        if len(rule) >= 3:
            entry["fieldPath"] = rule[2]
            entry["reason"] = rule[3] if len(rule) == 4 else "FieldValueInvalid"
        out.append(entry)
    return {"x-kubernetes-validations": out}


def cross_field_error(field: str, message: str) -> PydanticCustomError:
    """An error for a rule spanning fields; ``field`` is relative to the model raising it.

    The relative field is kept in the error context so :func:`error_paths` can
    name the exact field even though pydantic locates model-level errors at the model.
    """
    return PydanticCustomError("cross_field", message, {"field": field})


class _Spec(BaseModel):
    # extra="forbid" mirrors the API server's strict field validation: a typo is an error, not a no-op.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class _Status(BaseModel):
    # The operator reads back status written by older or newer versions of itself.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


# --------------------------------------------------------------------------- enums


class Mode(StrEnum):
    """Whether the operator changes replica counts (Enforce) or only reports decisions (DryRun)."""

    ENFORCE = "Enforce"
    DRY_RUN = "DryRun"


class SelectPolicy(StrEnum):
    """How the allowed change of several policies is combined (Kubernetes HPA semantics)."""

    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


class PolicyType(StrEnum):
    """The unit of a scaling policy's value."""

    PODS = "Pods"
    PERCENT = "Percent"


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


DeploymentName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=DNS_SUBDOMAIN_PATTERN),
]
PromQL = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_LENGTH, pattern=NOT_BLANK_PATTERN)]


# ------------------------------------------------------------------------ behavior


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
    policies: list[HPAScalingPolicy] = Field(
        min_length=1,
        max_length=MAX_POLICIES,
        description="Limits on the change per period; combined according to selectPolicy.",
    )

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


def _default_scale_up_policies() -> list[HPAScalingPolicy]:
    return [
        HPAScalingPolicy(type=PolicyType.PERCENT, value=100, period_seconds=15),
        HPAScalingPolicy(type=PolicyType.PODS, value=4, period_seconds=15),
    ]


def _default_scale_down_policies() -> list[HPAScalingPolicy]:
    return [HPAScalingPolicy(type=PolicyType.PERCENT, value=100, period_seconds=15)]


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
    policies: list[HPAScalingPolicy] = Field(
        default_factory=_default_scale_up_policies,
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
    policies: list[HPAScalingPolicy] = Field(
        default_factory=_default_scale_down_policies,
        json_schema_extra={"default": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
        min_length=1,
        max_length=MAX_POLICIES,
        description="Limits on replicas removed per period (default: Percent 100 per 15s).",
    )


class Behavior(_Spec):
    """How fast a target may scale, with Kubernetes autoscaling/v2 HPA semantics, plus a
    tolerance and optional delays. Omitted parts take the HPA defaults field by field."""

    scale_up: ScaleUpRules = Field(
        default_factory=ScaleUpRules,
        description="Rules for scaling up (HPA defaults: window 0, Percent 100/15s and Pods 4/15s, Max).",
    )
    scale_down: ScaleDownRules = Field(
        default_factory=ScaleDownRules,
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


# ---------------------------------------------------------------------- web tier


class Forecast(_Spec):
    """Opt-in seasonal forecast: raise the floor ahead of a rise the metric showed a season ago."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.leadSeconds < self.seasonSeconds",
                "{path}.leadSeconds must be < {path}.seasonSeconds",
                ".leadSeconds",
            ),
        )
    )

    season_seconds: StrictInt = Field(
        ge=60,
        le=FORECAST_MAX_SEASON_SECONDS,
        description="How far back the same moment is: 86400 for the same time yesterday, 604800 for "
        "the same time last week. Prometheus must keep that much history.",
    )
    lead_seconds: StrictInt = Field(
        default=300,
        ge=1,
        le=86400,
        description="How far ahead to look (default 300): the floor rises to the highest value the "
        "metric had in the lead window a season ago, shaped by how the last lead window compares "
        "with the same window then (ratio clamped to [0.5, 2]). At least the pods' start time.",
    )

    @model_validator(mode="after")
    def _rules(self) -> Forecast:
        if self.lead_seconds >= self.season_seconds:
            raise cross_field_error(
                "leadSeconds",
                f"leadSeconds ({self.lead_seconds}) must be < seasonSeconds ({self.season_seconds})",
            )
        return self


class RequestRateMetric(_Spec):
    """Scale on requests per second read from Prometheus."""

    query: PromQL = Field(
        description="PromQL expression returning the application's total requests per second "
        "(a single series or a scalar)."
    )
    per_replica: StrictFloat = Field(
        gt=0,
        allow_inf_nan=False,
        description="Requests per second one replica should carry; desired replicas = "
        "ceil(rate / perReplica).",
    )
    forecast: Forecast | None = Field(
        default=None,
        description="Opt-in: also size for the value this metric had a season ago, just ahead (off "
        "by default).",
    )


class WebSpec(_Spec):
    """The web tier: a Deployment sized through an HPA that the operator owns."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.minReplicas <= self.maxReplicas",
                "{path}.minReplicas must be <= {path}.maxReplicas",
                ".minReplicas",
            ),
            (
                "has(self.cpuUtilization) || has(self.memoryUtilization) || has(self.requestRate)",
                "{path} must set at least one of cpuUtilization, memoryUtilization, requestRate",
                ".cpuUtilization",
                "FieldValueRequired",
            ),
        )
    )

    deployment: DeploymentName = Field(description="Name of the web Deployment, in the policy's namespace.")
    min_replicas: StrictInt = Field(
        default=1, ge=1, le=INT32_MAX, description="Fewest replicas (at least 1, default 1)."
    )
    max_replicas: StrictInt = Field(ge=1, le=INT32_MAX, description="Most replicas; must be >= minReplicas.")
    cpu_utilization: StrictInt | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Target average CPU utilization in percent of the pods' CPU requests (HPA "
        "resource metric).",
    )
    memory_utilization: StrictInt | None = Field(
        default=None,
        ge=1,
        le=100,
        description="Target average memory utilization in percent of the pods' memory requests "
        "(HPA resource metric).",
    )
    request_rate: RequestRateMetric | None = Field(
        default=None,
        description="Target requests per second per replica, from a Prometheus query.",
    )
    behavior: Behavior = Field(
        default_factory=Behavior,
        description="Scaling speed limits for the web tier; omitted fields take the HPA defaults.",
    )

    @model_validator(mode="after")
    def _rules(self) -> WebSpec:
        if self.min_replicas > self.max_replicas:
            raise cross_field_error(
                "minReplicas",
                f"minReplicas ({self.min_replicas}) must be <= maxReplicas ({self.max_replicas})",
            )
        if self.cpu_utilization is None and self.memory_utilization is None and self.request_rate is None:
            raise cross_field_error(
                "cpuUtilization",
                "must set at least one of cpuUtilization, memoryUtilization, requestRate",
            )
        return self


# ---------------------------------------------------------------------- workers


def _preset_defaults(field: str) -> str:
    """What each preset reads for one input, for the input's description."""
    said = (f"{p}: {getattr(q, field) or 'none, set this'}" for p, q in PRESETS.items())
    return f"(default: the preset's; {'; '.join(said)})"


def _arrival_rate_required(prefix: str, preset: Preset, field: str) -> str:
    """The one wording, for CEL (prefix `{path}.`) and the model (no prefix), of a preset without arrivals
    under a field that reads them (drainSeconds, targetWaitSeconds)."""
    return (
        f"{prefix}metrics.arrivalRate is required with {prefix}{field}: preset {preset} gives no arrival rate"
    )


# The fields whose estimate reads the arrival rate.
_READS_ARRIVALS = ("drainSeconds", "targetWaitSeconds")


# The presets that give no arrival rate: with drainSeconds or targetWaitSeconds, the policy writes its own.
_NO_ARRIVALS = [p for p, q in PRESETS.items() if q.arrival_rate is None]
# The fields a worker is sized by: at least one is set.
_SIZED_BY = "tasksPerWorker, drainSeconds, targetWaitSeconds"


class WorkerMetrics(_Spec):
    """Whose series one queue's metrics are read from (the preset), and PromQL overrides for them.
    ``<app>`` and ``<queue>`` in a query are replaced by the app and the queue name (escaped for a
    PromQL string)."""

    preset: Preset = Field(
        default=Preset.SCALEKEEPER,
        description=f"The exporter whose series the default queries read (default {Preset.SCALEKEEPER}). "
        + " ".join(f"{p}: {q.summary}." for p, q in PRESETS.items())
        + " A query written here replaces the preset's.",
    )
    app: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        description="The `app` label of the exporter's series, filled in for <app> in the queries "
        "(default: the policy's name, as a policy sizes one application). Presets without an app label "
        "do not use it; queries written here may.",
    )
    waiting: PromQL | None = Field(
        default=None,
        description=f"Tasks waiting in the queue {_preset_defaults('waiting')}.",
    )
    in_flight: PromQL | None = Field(
        default=None,
        description="Tasks received by workers and not yet finished, including prefetched ones "
        f"{_preset_defaults('in_flight')}.",
    )
    arrival_rate: PromQL | None = Field(
        default=None,
        description="Tasks published per second; read only with drainSeconds or targetWaitSeconds "
        f"{_preset_defaults('arrival_rate')}.",
    )
    completion_rate: PromQL | None = Field(
        default=None,
        description="Tasks completed per second; read only with drainSeconds "
        f"{_preset_defaults('completion_rate')}.",
    )
    service_seconds: PromQL | None = Field(
        default=None,
        description="A task's mean runtime, in seconds; read only with targetWaitSeconds "
        f"{_preset_defaults('service_seconds')}.",
    )
    service_scv: PromQL | None = Field(
        default=None,
        description="The runtime's squared coefficient of variation (variance / mean^2; 1 for exponential "
        f"runtimes); read only with targetWaitSeconds {_preset_defaults('service_scv')}.",
    )
    executing_per_pod: PromQL | None = Field(
        default=None,
        description="Tasks executing in each worker pod, one series per pod with a `pod` label; read only "
        f"on a scale-down with protectBusyWorkers {_preset_defaults('executing_per_pod')}.",
    )


_NON_NAME = re.compile(r"[^a-z0-9-]+")


# What the API server can check of an embedded pod template: metadata an object with string labels, a
# spec with at least one container, each named and with an image (a Deployment made from less is refused;
# the operator adds its own labels to these). The rest is the pod's own schema.
POD_TEMPLATE_SCHEMA: dict[str, Any] = {
    "x-kubernetes-preserve-unknown-fields": True,
    "required": ["spec"],
    "properties": {
        "metadata": {
            "type": "object",
            "description": "The pods' metadata.",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "labels": {
                    "type": "object",
                    "description": "The pods' labels.",
                    "additionalProperties": {"type": "string"},
                }
            },
        },
        "spec": {
            "type": "object",
            "description": "The pod's spec.",
            "x-kubernetes-preserve-unknown-fields": True,
            "required": ["containers"],
            "properties": {
                "containers": {
                    "type": "array",
                    "description": "The pod's containers (at least one, each with name and image).",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                        "required": ["name", "image"],
                        "properties": {
                            "name": {
                                "type": "string",
                                "description": "The container's name.",
                                "minLength": 1,
                                "maxLength": 63,
                                "pattern": DNS_LABEL_PATTERN,
                            },
                            "image": {
                                "type": "string",
                                "description": "The container's image.",
                                "minLength": 1,
                            },
                        },
                    },
                }
            },
        },
    },
}


def pod_template_problem(template: dict[str, Any]) -> tuple[str, str] | None:
    """(field below template, why) when the template is not a pod template the API server would take."""
    metadata = template.get("metadata", {})
    if not isinstance(metadata, dict):
        return "metadata", "a pod template's metadata must be an object"
    labels = metadata.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        return "metadata.labels", "a pod template's labels must map names to strings"
    spec = template.get("spec")
    if not isinstance(spec, dict):
        return "spec", "a pod template needs a spec (its containers go in template.spec.containers)"
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return "spec.containers", "a pod template needs at least one container"
    for i, container in enumerate(containers):
        for key in ("name", "image"):
            if (
                not isinstance(container, dict)
                or not isinstance(container.get(key), str)
                or not container[key]
            ):
                return f"spec.containers[{i}].{key}", f"each container needs a {key}"
        name = container["name"]
        if len(name) > 63 or not re.match(DNS_LABEL_PATTERN, name):
            return f"spec.containers[{i}].name", f"a container's name must be a DNS label, got {name!r}"
    return None


def generated_name_suffix(queue: str) -> str:
    """The part of a templated worker's Deployment name made from its queue: lower-cased, every
    character a name may not hold made `-`."""
    return _NON_NAME.sub("-", queue.lower()).strip("-") or "queue"


class WorkerSpec(_Spec):
    """One Celery queue and the worker Deployment that consumes it."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.minReplicas <= self.maxReplicas",
                "{path}.minReplicas must be <= {path}.maxReplicas",
                ".minReplicas",
            ),
            (
                "has(self.deployment) != has(self.template)",
                "{path} must set exactly one of deployment or template",
                ".deployment",
            ),
            (
                "has(self.tasksPerWorker) || has(self.drainSeconds) || has(self.targetWaitSeconds)",
                "{path} must set at least one of " + _SIZED_BY,
                ".tasksPerWorker",
                "FieldValueRequired",
            ),
            # Without metrics the default preset's queries are read, and it gives every input.
            *(
                (
                    f"!has(self.{field}) || !has(self.metrics) || "
                    f"self.metrics.preset != '{preset}' || has(self.metrics.arrivalRate)",
                    _arrival_rate_required("{path}.", preset, field),
                    ".metrics.arrivalRate",
                    "FieldValueRequired",
                )
                for field in _READS_ARRIVALS
                for preset in _NO_ARRIVALS
            ),
        )
    )

    queue: str = Field(
        min_length=1,
        max_length=MAX_QUEUE_LENGTH,
        description="Celery queue name; unique within the policy.",
    )
    deployment: DeploymentName | None = Field(
        default=None,
        description="Name of an existing worker Deployment in the policy's namespace. Exactly one of "
        "deployment and template.",
    )
    template: dict[str, Any] | None = Field(
        default=None,
        description="A pod template (metadata and spec) from which the operator creates and owns a "
        "Deployment named <policy>-worker-<queue>. Exactly one of deployment and template.",
        json_schema_extra=POD_TEMPLATE_SCHEMA,
    )
    min_replicas: StrictInt = Field(
        default=0, ge=0, le=INT32_MAX, description="Fewest workers; 0 allows scaling to zero (default 0)."
    )
    max_replicas: StrictInt = Field(ge=1, le=INT32_MAX, description="Most workers; must be >= minReplicas.")
    tasks_per_worker: StrictInt | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="Backlog (waiting plus in-flight tasks) one worker should carry; desired = "
        "ceil(backlog / tasksPerWorker).",
    )
    drain_seconds: StrictInt | None = Field(
        default=None,
        ge=1,
        le=86400,
        description="Target time, in seconds, to drain the backlog, given the arrival rate and the "
        "completion rate per worker.",
    )
    target_wait_seconds: StrictInt | None = Field(
        default=None,
        ge=1,
        le=86400,
        description="Objective: the 95th percentile of a task's wait before it starts, in seconds. The "
        "fewest workers whose predicted p95 wait meets it, from the arrival rate, the runtime's mean and "
        "variance (metrics.serviceSeconds, metrics.serviceScv) and the tasks in the queue (Erlang C with the "
        "Allen-Cunneen correction). Until a runtime is read (no task finished in the query's window) the "
        "other estimates size alone. With tasksPerWorker or drainSeconds, the largest estimate wins.",
    )
    protect_busy_workers: StrictBool = Field(
        default=True,
        description="Before lowering replicas, annotate each pod with controller.kubernetes.io/"
        "pod-deletion-cost from its executing tasks (metrics.executingPerPod), so that idle pods are "
        "removed first (default true). Without a per-pod reading the scale-down goes ahead unprotected, "
        "with a Warning Event.",
    )
    activation_tasks: StrictInt = Field(
        default=1,
        ge=1,
        le=INT32_MAX,
        description="Backlog needed before scaling up from zero workers (default 1).",
    )
    concurrency: StrictInt = Field(
        default=1,
        ge=1,
        le=1000,
        description="Worker processes (Celery concurrency) per pod (default 1).",
    )
    prefetch_multiplier: StrictInt = Field(
        default=4,
        ge=1,
        le=1000,
        description="Celery worker_prefetch_multiplier (default 4); with concurrency it tells how "
        "many reserved tasks a pod holds, which count as load.",
    )
    metrics: WorkerMetrics | None = Field(
        default=None,
        description="Whose series this queue's metrics are read from (preset, app), and PromQL overrides; "
        "omitted ones use the preset's (default: the scalekeeper exporter's, app the policy's name).",
    )
    cooldown_seconds: StrictInt = Field(
        default=300,
        ge=0,
        le=86400,
        description="Seconds the backlog must stay at zero before scaling to zero (default 300).",
    )
    forecast: Forecast | None = Field(
        default=None,
        description="Opt-in: also size for the backlog (waiting + in flight) the queue had a season "
        "ago, just ahead; can start workers from zero before a known rise (off by default).",
    )
    behavior: Behavior = Field(
        default_factory=Behavior,
        description="Scaling speed limits for this worker Deployment; omitted fields take the HPA defaults.",
    )

    @model_validator(mode="after")
    def _rules(self) -> WorkerSpec:
        if self.min_replicas > self.max_replicas:
            raise cross_field_error(
                "minReplicas",
                f"minReplicas ({self.min_replicas}) must be <= maxReplicas ({self.max_replicas})",
            )
        if (self.deployment is None) == (self.template is None):
            raise cross_field_error("deployment", "must set exactly one of deployment or template")
        if self.tasks_per_worker is None and self.drain_seconds is None and self.target_wait_seconds is None:
            raise cross_field_error("tasksPerWorker", "must set at least one of " + _SIZED_BY)
        metrics = self.metrics or WorkerMetrics()
        if metrics.arrival_rate is None and metrics.preset in _NO_ARRIVALS:
            for field, value in zip(
                _READS_ARRIVALS, (self.drain_seconds, self.target_wait_seconds), strict=True
            ):
                if value is not None:
                    raise cross_field_error(
                        "metrics.arrivalRate", _arrival_rate_required("", metrics.preset, field)
                    )
        if self.template is not None and (problem := pod_template_problem(self.template)) is not None:
            raise cross_field_error(f"template.{problem[0]}", problem[1])
        return self

    def deployment_name(self, policy_name: str) -> str:
        """The Deployment this worker scales: ``deployment``, or the one made from ``template``.

        Celery queue names may hold characters a Deployment name may not, so the
        generated name is lower-cased and other characters become ``-``. A name longer than its
        ReplicaSets' names leave room for is cut and ended with a hash (kube/names.py).
        """
        if self.deployment is not None:
            return self.deployment
        return fitted(f"{policy_name}-worker-{generated_name_suffix(self.queue)}", GENERATED_NAME_MAX)

    @property
    def slots_per_pod(self) -> int:
        """Tasks one pod can hold at once (running plus prefetched)."""
        return self.concurrency * self.prefetch_multiplier


# ---------------------------------------------------------------- read replicas


class ScaleTargetRef(_Spec):
    """An object with replicas: one with a /scale subresource, or one with replicasPath."""

    api_version: str = Field(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=API_VERSION_PATTERN,
        description="API version of the target, with its version: apps/v1 or postgresql.cnpg.io/v1.",
    )
    kind: str = Field(
        min_length=1,
        max_length=63,
        description="Kind of the target, e.g. StatefulSet or Cluster.",
    )
    name: str = Field(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of the target, in the policy's namespace.",
    )


class ReplicaMetric(_Spec):
    """The load metric of the read replicas."""

    query: PromQL = Field(
        description="PromQL expression returning the total read load (e.g. read queries per second "
        "or client connections)."
    )
    per_replica: StrictFloat = Field(
        gt=0,
        allow_inf_nan=False,
        description="Load one replica should carry; desired = ceil(load / perReplica).",
    )
    forecast: Forecast | None = Field(
        default=None,
        description="Opt-in: also size for the value this metric had a season ago, just ahead (off "
        "by default).",
    )


class ReadReplicasSpec(_Spec):
    """Read replicas of a database, scaled through /scale or a replicas field."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.minReplicas <= self.maxReplicas",
                "{path}.minReplicas must be <= {path}.maxReplicas",
                ".minReplicas",
            ),
            (
                "!has(self.floor) || (self.floor >= self.minReplicas && self.floor <= self.maxReplicas)",
                "{path}.floor must be within [{path}.minReplicas, {path}.maxReplicas]",
                ".floor",
            ),
        )
    )

    target: ScaleTargetRef = Field(description="The object whose replicas are scaled.")
    replicas_path: str | None = Field(
        default=None,
        max_length=MAX_NAME_LENGTH,
        pattern=REPLICAS_PATH_PATTERN,
        description="Dotted path of the replicas field (e.g. spec.numberOfInstances), for targets "
        "without a /scale subresource.",
    )
    min_replicas: StrictInt = Field(default=0, ge=0, le=INT32_MAX, description="Fewest replicas (default 0).")
    max_replicas: StrictInt = Field(ge=1, le=INT32_MAX, description="Most replicas; must be >= minReplicas.")
    floor: StrictInt | None = Field(
        default=None,
        ge=0,
        le=INT32_MAX,
        description="Scale-down never goes below this; minReplicas <= floor <= maxReplicas "
        "(default minReplicas).",
    )
    metric: ReplicaMetric = Field(description="The load metric and the load one replica carries.")
    behavior: Behavior = Field(
        default_factory=Behavior,
        description="Scaling speed limits for the replicas; omitted fields take the HPA defaults.",
    )

    @model_validator(mode="after")
    def _rules(self) -> ReadReplicasSpec:
        if self.min_replicas > self.max_replicas:
            raise cross_field_error(
                "minReplicas",
                f"minReplicas ({self.min_replicas}) must be <= maxReplicas ({self.max_replicas})",
            )
        if self.floor is not None and not self.min_replicas <= self.floor <= self.max_replicas:
            raise cross_field_error(
                "floor",
                f"floor ({self.floor}) must be within [minReplicas, maxReplicas] "
                f"([{self.min_replicas}, {self.max_replicas}])",
            )
        return self

    @property
    def effective_floor(self) -> int:
        return self.min_replicas if self.floor is None else self.floor


# ------------------------------------------------------------ connection budget


class ConnectionBudget(_Spec):
    """Database connections shared by the tiers; scale-ups that would exceed it are held back."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                # reserved 0 always fits; without this guard maxConnections 0 would fail twice.
                "self.reserved == 0 || self.reserved < self.maxConnections",
                "{path}.reserved must be < {path}.maxConnections",
                ".reserved",
            ),
        )
    )

    max_connections: StrictInt = Field(ge=1, le=INT32_MAX, description="The primary's max_connections.")
    web_pool_size: StrictInt = Field(
        default=0, ge=0, le=INT32_MAX, description="Connections each web pod opens (pool size; default 0)."
    )
    worker_pool_size: StrictInt = Field(
        default=0,
        ge=0,
        le=INT32_MAX,
        description="Connections each worker pod opens (pool size times processes; default 0).",
    )
    replica_max_connections: StrictInt | None = Field(
        default=None,
        ge=1,
        le=INT32_MAX,
        description="max_connections of each read replica; when set, reads served by replicas are "
        "checked against replicas x replicaMaxConnections.",
    )
    reserved: StrictInt = Field(
        default=0,
        ge=0,
        le=INT32_MAX,
        description="Connections kept free for administration, migrations and other clients (default 0).",
    )

    @model_validator(mode="after")
    def _rules(self) -> ConnectionBudget:
        if self.reserved and self.reserved >= self.max_connections:
            raise cross_field_error(
                "reserved",
                f"reserved ({self.reserved}) must be < maxConnections ({self.max_connections})",
            )
        return self

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved


# --------------------------------------------------------------------- the spec


# Two tiers of one policy on one workload would size one replica count in turn.
_NAMED_TWICE = "must not name a Deployment another tier of the policy sizes"


class ScalingPolicySpec(_Spec):
    """Sizes an application's tiers (web, Celery workers, read replicas) from Prometheus metrics."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "has(self.web) || (has(self.workers) && size(self.workers) > 0) || has(self.readReplicas)",
                "spec must set at least one of web, workers, readReplicas",
            ),
            (
                "!has(self.workers) || self.workers.all(w, self.workers.exists_one(x, x.queue == w.queue))",
                "spec.workers[].queue must be unique",
                ".workers",
            ),
            (
                "!has(self.workers) || self.workers.all(w, !has(w.deployment) || ("
                "(!has(self.web) || w.deployment != self.web.deployment) && "
                "self.workers.exists_one(x, has(x.deployment) && x.deployment == w.deployment)))",
                f"spec.workers[].deployment {_NAMED_TWICE}",
                ".workers",
            ),
            (
                "!has(self.readReplicas) || self.readReplicas.target.kind != 'Deployment' || "
                "!self.readReplicas.target.apiVersion.startsWith('apps/') || ("
                "(!has(self.web) || self.web.deployment != self.readReplicas.target.name) && "
                "(!has(self.workers) || "
                "self.workers.all(w, !has(w.deployment) || w.deployment != self.readReplicas.target.name)))",
                f"spec.readReplicas.target {_NAMED_TWICE}",
                ".readReplicas.target",
            ),
        )
    )

    mode: Mode = Field(
        default=Mode.ENFORCE,
        description="Enforce changes replicas; DryRun only records decisions in status (default Enforce).",
    )
    interval_seconds: StrictInt = Field(
        default=5,
        ge=1,
        le=3600,
        description="How often, in seconds, the operator re-evaluates this policy (default 5).",
    )
    web: WebSpec | None = Field(default=None, description="The web tier, sized through an owned HPA.")
    workers: list[WorkerSpec] | None = Field(
        default=None,
        max_length=MAX_WORKERS,
        description="Celery worker Deployments, one per queue.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["queue"]},
    )
    read_replicas: ReadReplicasSpec | None = Field(
        default=None, description="Database read replicas, sized from a load metric."
    )
    connection_budget: ConnectionBudget | None = Field(
        default=None,
        description="Database connection budget that limits scale-ups of web and worker pods.",
    )

    @model_validator(mode="after")
    def _rules(self) -> ScalingPolicySpec:
        if self.web is None and not self.workers and self.read_replicas is None:
            raise cross_field_error("", "spec must set at least one of web, workers, readReplicas")
        seen: set[str] = set()
        for i, worker in enumerate(self.workers or []):
            if worker.queue in seen:
                raise cross_field_error(
                    f"workers[{i}].queue", f"workers[{i}].queue {worker.queue!r} is not unique"
                )
            seen.add(worker.queue)
        self._one_tier_per_workload()
        return self

    def _one_tier_per_workload(self) -> None:
        named: dict[str, str] = {}
        if self.web is not None:
            named[self.web.deployment] = "web.deployment"
        generated: dict[str, str] = {}
        for i, worker in enumerate(self.workers or []):
            if worker.deployment is not None:
                field = f"workers[{i}].deployment"
                if worker.deployment in named:
                    other = named[worker.deployment]
                    message = f"{field} {worker.deployment!r} {_NAMED_TWICE} ({other})"
                    raise cross_field_error(field, message)
                named[worker.deployment] = field
                continue
            # Queues whose generated Deployment names fold to one (case, characters a name may not hold).
            suffix = generated_name_suffix(worker.queue)
            if suffix in generated:
                field = f"workers[{i}].queue"
                message = (
                    f"{field} {worker.queue!r} {_NAMED_TWICE}: its generated Deployment "
                    f"<policy>-worker-{suffix} is also {generated[suffix]}'s"
                )
                raise cross_field_error(field, message)
            generated[suffix] = f"workers[{i}].queue"
        rr = self.read_replicas
        deployment = (
            rr is not None and rr.target.kind == "Deployment" and rr.target.api_version.startswith("apps/")
        )
        if rr is not None and deployment and rr.target.name in named:
            other = named[rr.target.name]
            raise cross_field_error("readReplicas.target", f"readReplicas.target {_NAMED_TWICE} ({other})")


# ---------------------------------------------------------------------- status


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

    type: ConditionType = Field(
        description="Ready, MetricsAvailable, ScalingLimited, Conflict, SpecValid or BusyWorkersProtected."
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
        description="Ready, MetricsAvailable, ScalingLimited, Conflict and SpecValid conditions.",
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
    verification: Verification | None = Field(
        default=None, description="What a server-side dry-run said of the objects this spec makes."
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
        new = Condition(type=type_, status=status, reason=reason, message=message, last_transition_time=when)
        self.conditions = [c for c in self.conditions if c.type != type_] + [new]
        if type_ is ConditionType.READY:
            self.ready = status.value

    def to_patch(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# -------------------------------------------------------------------- errors


def _render_loc(loc: tuple[int | str, ...], field: str, root: str) -> str:
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    if field:
        path += field if field.startswith("[") else f".{field}"
    return path


def error_paths(exc: ValidationError, root: str = "spec") -> list[str]:
    """Full field paths (``spec.workers[1].maxReplicas``) of a validation error, in order."""
    paths = []
    for err in exc.errors():
        ctx = err.get("ctx") or {}
        field = ctx.get("field", "") if err["type"] == "cross_field" else ""
        paths.append(_render_loc(tuple(err["loc"]), str(field), root))
    return paths


def error_messages(exc: ValidationError, root: str = "spec") -> list[str]:
    """One line per error: ``spec.workers[1].maxReplicas: <message>``."""
    return [f"{p}: {e['msg']}" for p, e in zip(error_paths(exc, root), exc.errors(), strict=True)]


class SpecError(ValueError):
    """An invalid ScalingPolicy spec; ``messages`` name each offending field."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def parse_spec(data: Any) -> ScalingPolicySpec:
    """Validate a spec as read from the API (camelCase), raising SpecError with field paths."""
    try:
        return ScalingPolicySpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(error_messages(exc)) from exc


__all__ = [
    "API_VERSION",
    "CRD_NAME",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Behavior",
    "Condition",
    "ConditionStatus",
    "ConditionType",
    "ConnectionBudget",
    "HPAScalingPolicy",
    "HPAScalingRules",
    "LimitedBy",
    "Mode",
    "PolicyType",
    "Preset",
    "ReadReplicasSpec",
    "ReplicaMetric",
    "RequestRateMetric",
    "ScaleDownRules",
    "ScaleTargetRef",
    "ScaleUpRules",
    "ScalingPolicySpec",
    "ScalingPolicyStatus",
    "SelectPolicy",
    "SpecError",
    "TargetStatus",
    "WebSpec",
    "WorkerMetrics",
    "WorkerSpec",
    "error_messages",
    "error_paths",
    "parse_spec",
]
