"""The read-replica tier: anything with a `/scale` subresource (a StatefulSet, CloudNativePG's `Cluster`)
or a replicas field (`replicasPath`), sized from one load metric, never below its floor."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from .. import model
from ..engine.forecast import FORECAST_METRICS, ForecastInput, raise_to_forecast
from ..engine.sizing import SampleInput, size_by_rate
from ..engine.types import ObservedTarget, TargetDecision, TargetHistory, TargetPlan
from ..kube.owners import OwnerRef
from ..kube.targets import TargetRef
from ..metrics.promql import forecast_windows
from .base import Summary, Tier, reading
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
        queries = {READ_LOAD: metric.query}
        if metric.forecast is not None:
            windows = forecast_windows(
                metric.query, metric.forecast.lead_seconds, metric.forecast.season_seconds
            )
            queries.update(zip(FORECAST_METRICS, windows, strict=True))
        return queries

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
        if rr.metric.forecast is not None:
            forecast = ForecastInput(
                *(
                    reading(samples, m, f"{m.replace('_', ' ')} for {READ_REPLICAS}", now, max_age)
                    for m in FORECAST_METRICS
                )
            )
            proposal = raise_to_forecast(proposal, forecast, rr.metric.per_replica)
        return TargetPlan(
            self.behavior,
            rr.min_replicas,
            rr.max_replicas,
            observed.replicas,
            proposal,
            history,
            floor=rr.effective_floor,
        )
