"""The web tier: a Deployment sized through an owned HPA, on resource utilization or a request rate."""

from __future__ import annotations

from pydantic import ConfigDict, Field, StrictFloat, StrictInt, model_validator

from .base import INT32_MAX, DeploymentName, PromQL, _Spec, cel
from .behavior import Behavior, default_behavior
from .errors import cross_field_error
from .forecast import Forecast


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
        default_factory=default_behavior,
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
