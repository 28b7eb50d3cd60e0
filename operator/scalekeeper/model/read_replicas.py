"""The read-replica tier: an object with replicas (a database's read replicas), sized from a load metric."""

from __future__ import annotations

from pydantic import ConfigDict, Field, StrictFloat, StrictInt, model_validator

from .base import (
    API_VERSION_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    INT32_MAX,
    MAX_NAME_LENGTH,
    REPLICAS_PATH_PATTERN,
    PromQL,
    _Spec,
    cel,
)
from .behavior import Behavior, default_behavior
from .errors import cross_field_error
from .forecast import Forecast


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
        default_factory=default_behavior,
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
