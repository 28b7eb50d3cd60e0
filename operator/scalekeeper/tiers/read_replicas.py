"""The read-replica tier: anything with a `/scale` subresource (a StatefulSet, CloudNativePG's `Cluster`)
or a replicas field (`replicasPath`), sized from one load metric, never below its floor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .. import model
from ..engine.bottleneck import Growth
from ..engine.sizing import SampleInput, size_by_rate
from ..engine.types import ObservedTarget, TargetDecision, TargetHistory, TargetPlan
from ..kube.owners import OwnerRef
from ..kube.targets import TargetRef
from .base import Summary, Tier, forecast_queries, raise_by_forecast, reading
from .convert import behavior_of

READ_REPLICAS = "readReplicas"
READ_LOAD = "load"


class ReadReplicasTier(Tier):
    summary: ClassVar[Summary] = "readReplicas"

    def __init__(self, owner: OwnerRef, spec: model.ReadReplicasSpec) -> None:
        super().__init__(owner)
        self.spec = spec
        self.name = READ_REPLICAS
        self.behavior = behavior_of(spec.behavior)

    def target(self) -> TargetRef:
        t = self.spec.target
        return TargetRef(t.api_version, t.kind, t.name, self.owner.namespace, self.spec.replicas_path)

    def absent(self) -> str:
        return f"read replicas {self.spec.target.name}"

    def queries(self) -> dict[str, str]:
        metric = self.spec.metric
        return {READ_LOAD: metric.query, **forecast_queries(metric.query, metric.forecast)}

    def plan(
        self,
        observed: ObservedTarget,
        samples: Mapping[str, SampleInput],
        history: TargetHistory,
        now: float,
        max_age: float | None,
    ) -> TargetPlan | TargetDecision:
        rr = self.spec
        load = reading(samples, READ_LOAD, "metric load for readReplicas", now, max_age)
        proposal = size_by_rate(
            load,
            rr.metric.per_replica,
            observed.replicas,
            self.behavior.tolerance,
            what="load",
            key=READ_LOAD,
        )
        proposal = raise_by_forecast(
            self.name, proposal, rr.metric.forecast, samples, rr.metric.per_replica, now, max_age
        )
        return TargetPlan(
            self.behavior,
            rr.min_replicas,
            rr.max_replicas,
            observed.replicas,
            proposal,
            history,
            floor=rr.effective_floor,
        )

    def growth(self) -> Growth:
        return Growth(READ_LOAD, "read load", "ReadLoadGrowingAtMax", self.spec.max_replicas)
