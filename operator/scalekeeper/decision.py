"""The policy-level decision, pure: (tiers, observed sizes, metric samples, histories, now) -> a decision
per target with its reasons. Each tier proposes from its own samples; the engine's rules (stabilization,
rate limits, clamps) decide each target; the connection budget may then hold scale-ups back.

No I/O: the cycle (cycle.py) gathers the inputs, calls `decide_tiers`, writes, and stores the histories.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from . import model
from .engine.budget import Budget, apply_budget
from .engine.rules import decide_plan
from .engine.sizing import SampleInput
from .engine.types import LimitedBy, ObservedTarget, PolicyDecision, TargetDecision, TargetHistory, TargetPlan
from .kube.owners import OwnerRef
from .tiers import Tier, tiers_of

# Prometheus scrapes every 15-30 s; a value not refreshed for two minutes comes from a dead
# exporter or a vanished series, and acting on it would be acting on the past.
DEFAULT_MAX_METRIC_AGE_SECONDS = 120.0

# Tiers decided outside a cycle (tests, the simulator) name no real policy: nothing is written.
_NO_POLICY = OwnerRef("", "", "")


def decide(
    spec: model.ScalingPolicySpec,
    observed: Mapping[str, ObservedTarget | int | None],
    samples: Mapping[str, Mapping[str, SampleInput]],
    histories: Mapping[str, TargetHistory | Mapping[str, Any] | None],
    now: float,
    *,
    max_metric_age_seconds: float | None = DEFAULT_MAX_METRIC_AGE_SECONDS,
) -> PolicyDecision:
    """Decide every target of a spec for the cycle at `now` (seconds, any fixed epoch).

    observed[name]: current replicas (or ObservedTarget, or None when the object is missing).
    samples[name][metric]: value or (value, unix timestamp); metric names are the tier modules'.
    histories[name]: the previous cycle's `PolicyDecision.histories()[name]` (or None).
    Target names: web, worker/<queue>, readReplicas. The decision does not depend on `spec.mode`.
    """
    return decide_tiers(
        spec,
        tiers_of(spec, _NO_POLICY),
        observed,
        samples,
        histories,
        now,
        max_metric_age_seconds=max_metric_age_seconds,
    )


def decide_tiers(
    spec: model.ScalingPolicySpec,
    tiers: Sequence[Tier],
    observed: Mapping[str, ObservedTarget | int | None],
    samples: Mapping[str, Mapping[str, SampleInput]],
    histories: Mapping[str, TargetHistory | Mapping[str, Any] | None],
    now: float,
    *,
    max_metric_age_seconds: float | None = DEFAULT_MAX_METRIC_AGE_SECONDS,
) -> PolicyDecision:
    notes: list[str] = []
    decisions: dict[str, TargetDecision] = {}
    plans: dict[str, TargetPlan] = {}
    for tier in tiers:
        history = _history(tier.name, histories.get(tier.name), notes)
        seen = _observed(observed.get(tier.name))
        if not seen.exists:
            decisions[tier.name] = _absent(tier.absent(), history)
            continue
        planned = tier.plan(seen, samples.get(tier.name, {}), history, now, max_metric_age_seconds)
        if isinstance(planned, TargetDecision):
            decisions[tier.name] = planned
        else:
            plans[tier.name] = planned
            decisions[tier.name] = decide_plan(planned, now)

    connections = None
    web_max: int | None = None
    budget = spec.connection_budget
    if budget is not None:
        web = next((t.name for t in tiers if t.pool == "web"), None)
        workers = [t.name for t in tiers if t.pool == "worker"]
        web_running = _observed(observed.get(web)).running if web is not None else None
        connections, web_max = apply_budget(
            Budget(budget.max_connections, budget.web_pool_size, budget.worker_pool_size, budget.reserved),
            web,
            workers,
            decisions,
            plans,
            now,
            notes,
            web_running,
        )
    ordered = {t.name: decisions[t.name] for t in tiers}
    return PolicyDecision(spec.mode.value, ordered, connections, web_max, tuple(notes))


def _observed(value: ObservedTarget | int | None) -> ObservedTarget:
    if value is None:
        return ObservedTarget(0, exists=False)
    if isinstance(value, ObservedTarget):
        return value
    return ObservedTarget(int(value))


def _history(name: str, value: TargetHistory | Mapping[str, Any] | None, notes: list[str]) -> TargetHistory:
    if isinstance(value, TargetHistory):
        return value
    try:
        return TargetHistory.from_dict(value)
    except ValueError as exc:
        # A corrupt stored history must not stop scaling; starting over only makes the
        # first cycles more conservative (the current size seeds the windows).
        notes.append(f"{name}: stored history ignored ({exc})")
        return TargetHistory()


def _absent(what: str, history: TargetHistory) -> TargetDecision:
    return TargetDecision(
        current=0,
        desired=0,
        limited_by=LimitedBy.NONE,
        reason=f"{what}: target does not exist; nothing to scale",
        history=history,
        exists=False,
    )
