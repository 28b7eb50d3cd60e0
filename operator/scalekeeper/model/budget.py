"""The connection budget: database connections shared by the tiers, which holds back scale-ups."""

from __future__ import annotations

from pydantic import ConfigDict, Field, StrictInt, model_validator

from .base import INT32_MAX, _Spec, cel
from .errors import cross_field_error


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
