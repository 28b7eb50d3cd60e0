"""The worker tier: one Celery queue and the worker Deployment that consumes it, with the queries its
metrics are read by and the name of the Deployment made from a template."""

from __future__ import annotations

import re
from typing import Any

from pydantic import ConfigDict, Field, StrictBool, StrictInt, model_validator

from ..kube.names import fitted
from ..metrics.presets import PRESETS, Preset
from .base import (
    GENERATED_NAME_MAX,
    INT32_MAX,
    MAX_NAME_LENGTH,
    MAX_QUEUE_LENGTH,
    DeploymentName,
    PromQL,
    _Spec,
    cel,
)
from .behavior import Behavior, default_behavior
from .errors import cross_field_error
from .forecast import Forecast
from .pod_template import POD_TEMPLATE_SCHEMA, pod_template_problem


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
        default_factory=default_behavior,
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
