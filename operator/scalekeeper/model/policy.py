"""The ScalingPolicy spec as a whole: its tiers, the rules that span them, and parsing a spec as read from
the API."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field, StrictInt, ValidationError, model_validator

from .base import MAX_WORKERS, _Spec, cel
from .budget import ConnectionBudget
from .errors import SpecError, cross_field_error, error_messages
from .read_replicas import ReadReplicasSpec
from .web import WebSpec
from .workers import WorkerSpec, generated_name_suffix


class Mode(StrEnum):
    """Whether the operator changes replica counts (Enforce) or only reports decisions (DryRun)."""

    ENFORCE = "Enforce"
    DRY_RUN = "DryRun"


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


def parse_spec(data: Any) -> ScalingPolicySpec:
    """Validate a spec as read from the API (camelCase), raising SpecError with field paths."""
    try:
        return ScalingPolicySpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(error_messages(exc)) from exc
