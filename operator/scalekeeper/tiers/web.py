"""The web tier: a Deployment sized through an autoscaling/v2 HPA the operator owns.

The HPA keeps sizing the Deployment on CPU and memory with the spec's behavior; this tier moves the HPA's
`minReplicas` to a floor of ceil(request rate / perReplica), raises the Deployment to a new floor at once
(never lowers it), and caps the HPA's `maxReplicas` by what the connection budget leaves. An HPA someone
else made for the Deployment is a conflict: nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from kubernetes.client.rest import ApiException

from .. import model
from ..engine.sizing import SampleInput, size_by_rate
from ..engine.types import LimitedBy, ObservedTarget, TargetDecision, TargetHistory, TargetPlan
from ..kube.dryrun import DryRunCall, Verdict, verdict
from ..kube.hpa import HpaClient, HpaState, desired_hpa, hpa_name
from ..kube.owners import OwnerRef
from ..kube.targets import TargetRef, WriteConflict
from ..kube.watched import hpa_name_key, hpa_target_key
from ..memory import OwnWrite
from .base import (
    ActContext,
    Conflict,
    Observation,
    ObserveContext,
    Outcome,
    Pool,
    Summary,
    Tier,
    forecast_queries,
    raise_by_forecast,
    reading,
)
from .convert import behavior_of

WEB = "web"
REQUEST_RATE = "request_rate"


@dataclass(frozen=True)
class WebObservation(Observation):
    hpa: HpaState | None = None

    def engine_view(self) -> ObservedTarget | None:
        """The engine moves the owned HPA's floor; the pods actually running still count against the
        connection budget."""
        if self.state is None:
            return None
        if self.hpa is not None and self.hpa.owned is not None:
            floor = int(self.hpa.owned["spec"].get("minReplicas") or 1)
            return ObservedTarget(floor, running=self.state.replicas)
        return ObservedTarget(self.state.replicas, ready=self.state.ready)

    def shown_current(self, decided: TargetDecision) -> int:
        # The decision is the HPA's floor; the status shows the Deployment's own size.
        return self.state.replicas if self.state is not None else decided.current


def raised_size(current: int, floor: int, max_replicas: int, by_budget: int | None) -> int | None:
    """The size to raise the web Deployment to: the floor, capped by maxReplicas and what the connection
    budget leaves; None when that is not above its current size (the operator never lowers it)."""
    target = min(floor, max_replicas, by_budget if by_budget is not None else floor)
    return target if target > current else None


class WebTier(Tier):
    summary: ClassVar[Summary] = "web"
    pool: ClassVar[Pool | None] = "web"

    def __init__(self, owner: OwnerRef, spec: model.WebSpec) -> None:
        super().__init__(owner)
        self.spec = spec
        self.name = WEB
        self.behavior = behavior_of(spec.behavior)

    def target(self) -> TargetRef:
        return TargetRef("apps/v1", "Deployment", self.spec.deployment, self.owner.namespace)

    def absent(self) -> str:
        return f"web Deployment {self.spec.deployment}"

    def queries(self) -> dict[str, str]:
        rate = self.spec.request_rate
        if rate is None:
            return {}
        return {REQUEST_RATE: rate.query, **forecast_queries(rate.query, rate.forecast)}

    def plan(
        self,
        observed: ObservedTarget,
        samples: Mapping[str, SampleInput],
        history: TargetHistory,
        now: float,
        max_age: float | None,
    ) -> TargetPlan | TargetDecision:
        web = self.spec
        if web.request_rate is None:
            # Without a request-rate signal the owned HPA sizes web alone on cpu/memory;
            # scalekeeper's floor is just minReplicas and there is nothing to remember.
            return TargetDecision(
                current=observed.replicas,
                desired=web.min_replicas,
                limited_by=LimitedBy.MIN,
                reason=f"no requestRate configured; HPA floor stays at minReplicas {web.min_replicas}",
                history=history,
            )
        rate = reading(samples, REQUEST_RATE, "metric request_rate for web", now, max_age)
        proposal = size_by_rate(
            rate,
            web.request_rate.per_replica,
            observed.replicas,
            self.behavior.tolerance,
            what="request rate",
            key=REQUEST_RATE,
        )
        proposal = raise_by_forecast(
            self.name,
            proposal,
            web.request_rate.forecast,
            samples,
            web.request_rate.per_replica,
            now,
            max_age,
        )
        return TargetPlan(
            self.behavior, web.min_replicas, web.max_replicas, observed.replicas, proposal, history
        )

    def watched_keys(self) -> list[str]:
        ns = self.owner.namespace
        return [
            *super().watched_keys(),
            hpa_name_key(ns, hpa_name(self.owner.name)),
            hpa_target_key(ns, self.spec.deployment),
        ]

    def observe(self, ctx: ObserveContext) -> WebObservation:
        base = super().observe(ctx)
        if base.state is None:
            return WebObservation(base.state, base.missing)
        if ctx.watched.hpas_watched:
            hpa = HpaClient.state_from(ctx.watched.hpas, self.owner, self.spec.deployment)
            owned_version = hpa.owned["metadata"]["resourceVersion"] if hpa.owned else None
            mine = ctx.memory.believed((self.name, "hpa"), owned_version, ctx.monotonic)
            if mine is not None:
                hpa = HpaState(mine, hpa.foreign)
        else:
            hpa = ctx.hpas.observe(self.owner, self.spec.deployment)
        conflict = None
        if hpa.foreign is not None:
            conflict = Conflict(
                "ForeignHPA",
                f"HorizontalPodAutoscaler {hpa.foreign} (not owned by this policy) already targets "
                f"Deployment {self.spec.deployment}; scalekeeper writes nothing for the web tier",
                f"web: conflicting HPA {hpa.foreign}",
            )
        return WebObservation(base.state, conflict=conflict, hpa=hpa)

    def act(self, ctx: ActContext, decided: TargetDecision, observed: Observation) -> Outcome:
        """Create or update the owned HPA with the decided floor (and the budget's cap on its max)."""
        assert isinstance(observed, WebObservation)
        hpa = observed.hpa
        if not decided.exists or hpa is None or hpa.foreign is not None:
            return Outcome.UNCHANGED
        desired = desired_hpa(self.spec, self.owner, decided.desired)
        by_budget = ctx.decision.web_max_by_budget
        if by_budget is not None:
            desired["spec"]["maxReplicas"] = max(
                desired["spec"]["minReplicas"], min(self.spec.max_replicas, by_budget)
            )
        try:
            done, after = ctx.hpas.apply(hpa, desired)
        except ApiException as exc:
            ctx.metrics.write("HorizontalPodAutoscaler", "conflict" if exc.status == 409 else "error")
            ctx.errors.append(
                f"web: writing HPA {hpa_name(self.owner.name)} failed ({exc.status} {exc.reason})"
            )
            return Outcome.FAILED
        if after is not None:
            before = hpa.owned["metadata"]["resourceVersion"] if hpa.owned else None
            write = OwnWrite(before, after, after["metadata"]["resourceVersion"], ctx.monotonic)
            ctx.memory.wrote((self.name, "hpa"), write)
        raised = self._raise_to_floor(ctx, observed, desired["spec"]["minReplicas"], by_budget)
        if done not in ("created", "updated"):
            return Outcome.WRITTEN if raised else Outcome.UNCHANGED
        ctx.metrics.write("HorizontalPodAutoscaler", done)
        if (hpa.owned or {}).get("spec", {}).get("minReplicas") != desired["spec"]["minReplicas"]:
            ctx.scaled(self.name)
        return Outcome.WRITTEN

    def _raise_to_floor(
        self, ctx: ActContext, observed: WebObservation, floor: int, by_budget: int | None
    ) -> bool:
        """Raise the Deployment to the floor now that the HPA's minReplicas holds it there.

        The HPA controller acts on a new minReplicas only at its next sync (up to 15 s later), so the
        operator writes the Deployment's replicas itself, once per rise; it never lowers them, since
        scale-down stays with the HPA, whose minReplicas already keeps it from going back under the floor.
        """
        state = observed.state
        if state is None:
            return False
        target = raised_size(state.replicas, floor, self.spec.max_replicas, by_budget)
        if target is None:
            return False
        try:
            return self.write_replicas(ctx, target, state)
        except WriteConflict:
            # Another writer (the HPA itself, most often) resized it since it was read; the floor is in the
            # HPA either way, and the next cycle looks again.
            return False

    def verify(self, call: DryRunCall) -> list[Verdict]:
        made = desired_hpa(self.spec, self.owner, self.spec.min_replicas)
        return [verdict(call, made, "horizontalpodautoscalers")]

    def subject(self) -> str:
        return "web floor (HPA minReplicas)"
