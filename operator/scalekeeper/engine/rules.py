"""HPA-style behavior normalization for one target.

This follows the Kubernetes HPA controller (pkg/controller/podautoscaler/horizontal.go,
v1.27+ structure) step for step, because users write `behavior` blocks expecting HPA
semantics and the web tier is handed to a real HPA: if our floor and the HPA disagreed on
what a behavior means, the two would fight. Order of a cycle:

1. seed the recommendation list with the current size on first sight (recordInitialRecommendation);
2. if the current size is outside [min, max], go straight to the bound (no metrics involved);
3. if metrics are unusable (all, or some while the rest say "scale down"), hold;
4. stabilize: clamp the current size into [lowest recommendation in the scale-up window,
   highest in the scale-down window], then record the unstabilized recommendation,
   overwriting a sample that has left both windows;
5. rate-limit against the scale events inside each policy's period, then clamp to [min, max];
6. record a scale event when the size changes.

Steps 7+ (floor, scale-down delay, cooldown, connection budget) are scalekeeper's own and
inert unless configured, so plain HPA inputs give plain HPA outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace

from .types import (
    EffectiveBehavior,
    LimitedBy,
    PolicyType,
    Proposal,
    Recommendation,
    ScaleEvent,
    ScalingRules,
    SelectPolicy,
    TargetDecision,
    TargetHistory,
    TargetPlan,
)

# The controller seeds its policy fold with the int32 extremes; keeping them (rather than
# "no limit") matters when a rule has no policies: a Max fold then yields "no scale-up at all".
_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


def replicas_changed_in_period(period_seconds: int, events: tuple[ScaleEvent, ...], now: float) -> int:
    """Sum of the changes of events strictly newer than `now - period_seconds`.

    Outdated-marked events still count: the controller only skips them when reusing slots.
    """
    cutoff = now - period_seconds
    return sum(e.change for e in events if e.timestamp > cutoff)


def _period_start(current: int, policy_period: int, history: TargetHistory, now: float) -> int:
    added = replicas_changed_in_period(policy_period, history.scale_up_events, now)
    deleted = replicas_changed_in_period(policy_period, history.scale_down_events, now)
    return current - added + deleted


def scale_up_limit(current: int, rules: ScalingRules, history: TargetHistory, now: float) -> int:
    """Highest size the scale-up policies allow now (may be below `current`)."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    pick: Callable[[int, int], int]
    if rules.select_policy is SelectPolicy.MIN:
        result, pick = _INT32_MAX, min
    else:
        result, pick = _INT32_MIN, max
    for policy in rules.policies:
        start = _period_start(current, policy.period_seconds, history, now)
        if policy.type is PolicyType.PODS:
            proposed = start + policy.value
        else:
            # Rounded up so that a small percentage of a small size still allows one pod.
            proposed = math.ceil(float(start) * (1 + policy.value / 100))
        result = pick(result, proposed)
    return result


def scale_down_limit(current: int, rules: ScalingRules, history: TargetHistory, now: float) -> int:
    """Lowest size the scale-down policies allow now (may be above `current`)."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    pick: Callable[[int, int], int]
    if rules.select_policy is SelectPolicy.MIN:
        result, pick = _INT32_MIN, max
    else:
        result, pick = _INT32_MAX, min
    for policy in rules.policies:
        start = _period_start(current, policy.period_seconds, history, now)
        if policy.type is PolicyType.PODS:
            proposed = start - policy.value
        else:
            # int() truncates toward zero exactly like Go's int32(float64) conversion.
            proposed = int(float(start) * (1 - policy.value / 100))
        result = pick(result, proposed)
    return result


def stabilize(
    behavior: EffectiveBehavior,
    current: int,
    desired: int,
    recommendations: tuple[Recommendation, ...],
    now: float,
) -> tuple[int, tuple[Recommendation, ...]]:
    """Return (stabilized size, recommendations with `desired` recorded)."""
    up_cutoff = now - behavior.scale_up.stabilization_window_seconds
    down_cutoff = now - behavior.scale_down.stabilization_window_seconds
    lowest_up = desired
    highest_down = desired
    reusable: int | None = None
    for index, rec in enumerate(recommendations):
        if rec.timestamp > up_cutoff:
            lowest_up = min(lowest_up, rec.replicas)
        if rec.timestamp > down_cutoff:
            highest_down = max(highest_down, rec.replicas)
        if rec.timestamp < up_cutoff and rec.timestamp < down_cutoff:
            # The controller reuses the last such slot, so the list stops growing once the
            # windows are full; which slot is reused is visible if the windows later widen.
            reusable = index
    stabilized = min(max(current, lowest_up), highest_down)
    entry = Recommendation(desired, now)
    if reusable is None:
        recorded = (*recommendations, entry)
    else:
        recorded = (*recommendations[:reusable], entry, *recommendations[reusable + 1 :])
    return stabilized, recorded


def _store_event(
    events: tuple[ScaleEvent, ...], rules: ScalingRules, change: int, now: float
) -> tuple[ScaleEvent, ...]:
    cutoff = now - rules.longest_period_seconds
    marked = [ScaleEvent(e.change, e.timestamp, e.outdated or e.timestamp < cutoff) for e in events]
    reusable: int | None = None
    for index, event in enumerate(marked):
        if event.outdated:
            reusable = index
    entry = ScaleEvent(change, now, False)
    if reusable is None:
        marked.append(entry)
    else:
        marked[reusable] = entry
    return tuple(marked)


def record_scale_event(
    history: TargetHistory, behavior: EffectiveBehavior, previous: int, new: int, now: float
) -> TargetHistory:
    """History after the target was resized from `previous` to `new` at `now`."""
    if new == previous:
        return history
    if new > previous:
        ups = _store_event(history.scale_up_events, behavior.scale_up, new - previous, now)
        return replace(history, scale_up_events=ups, last_scale_time=now)
    downs = _store_event(history.scale_down_events, behavior.scale_down, previous - new, now)
    return replace(history, scale_down_events=downs, last_scale_time=now)


def apply_rate_limits(
    behavior: EffectiveBehavior,
    min_replicas: int,
    max_replicas: int,
    current: int,
    desired: int,
    history: TargetHistory,
    now: float,
) -> tuple[int, LimitedBy | None]:
    """The controller's convertDesiredReplicasWithBehaviorRate: policies, then [min, max]."""
    if desired > current:
        # A limit below current means recent scale-downs already used the period's budget
        # differently; the controller then just refuses to scale up rather than scaling down.
        limit = max(scale_up_limit(current, behavior.scale_up, history, now), current)
        if max_replicas > limit:
            allowed, why = limit, LimitedBy.SCALE_UP_POLICY
        else:
            allowed, why = max_replicas, LimitedBy.MAX
        if desired > allowed:
            return allowed, why
    elif desired < current:
        limit = min(scale_down_limit(current, behavior.scale_down, history, now), current)
        if min_replicas < limit:
            allowed, why = limit, LimitedBy.SCALE_DOWN_POLICY
        else:
            allowed, why = min_replicas, LimitedBy.MIN
        if desired < allowed:
            return allowed, why
    return desired, None


def _last_event_time(events: tuple[ScaleEvent, ...]) -> float | None:
    return max((e.timestamp for e in events), default=None)


def _move(current: int, desired: int) -> str:
    if desired == current:
        return f"holding at {current}"
    return f"scaling {current} -> {desired}"


def decide_target(
    behavior: EffectiveBehavior,
    min_replicas: int,
    max_replicas: int,
    current: int,
    proposal: Proposal | int | None,
    history: TargetHistory,
    now: float,
    *,
    floor: int | None = None,
    cap: int | None = None,
    cap_reason: str = "",
    metric_name: str = "metric",
) -> TargetDecision:
    """Decide one target's size for this cycle.

    `proposal` is the raw recommendation: a Proposal from the sizing stage, a bare int (a
    recommendation whose metrics were all fine), or None when no metric was usable.
    `floor` bounds scale-downs only (read replicas); `cap` bounds scale-ups only (the
    connection budget's share for this target). Both are scalekeeper additions.
    """
    if max_replicas < min_replicas:
        raise ValueError(f"max replicas {max_replicas} is below min replicas {min_replicas}")
    if current < 0:
        raise ValueError(f"current replicas must be >= 0, got {current}")
    if proposal is None:
        proposal = Proposal(None, f"no usable value for {metric_name}", missing=(f"{metric_name} is absent",))
    elif isinstance(proposal, int):
        proposal = Proposal(proposal, f"{metric_name} recommends {proposal}")
    metrics = dict(proposal.metrics)

    if not history.recommendations:
        history = replace(history, recommendations=(Recommendation(current, now),))

    def finish(desired: int, limited_by: LimitedBy, reason: str) -> TargetDecision:
        new_history = record_scale_event(history, behavior, current, desired, now)
        return TargetDecision(
            current=current,
            desired=desired,
            limited_by=limited_by,
            reason=reason,
            history=new_history,
            raw=proposal.replicas,
            metrics=metrics,
        )

    # Out-of-range sizes go straight to the bound, before and regardless of metrics.
    # (The HPA leaves a target at 0 alone when min > 0, reading it as "autoscaling paused";
    # scalekeeper owns the target, so 0 < min is just another size below min.)
    if current > max_replicas:
        return finish(
            max_replicas, LimitedBy.MAX, f"current {current} is above max {max_replicas}; scaling to max"
        )
    if current < min_replicas:
        return finish(
            min_replicas, LimitedBy.MIN, f"current {current} is below min {min_replicas}; scaling to min"
        )

    raw = proposal.replicas
    if raw is None or (proposal.missing and raw < current):
        # Never scale down (or to zero) on a gap in the data: a dead exporter looks exactly
        # like an idle queue. The HPA records nothing for such a cycle, and neither do we.
        why = "; ".join(proposal.missing) or proposal.reason
        if raw is not None:
            why = f"{why} (valid metrics alone would scale down to {raw})"
        return TargetDecision(
            current=current,
            desired=current,
            limited_by=LimitedBy.MISSING_METRIC,
            reason=f"holding at {current}: {why}",
            history=history,
            raw=raw,
            metrics=metrics,
        )

    stabilized, recorded = stabilize(behavior, current, raw, history.recommendations, now)
    history = replace(history, recommendations=recorded)
    desired, rate_limit = apply_rate_limits(
        behavior, min_replicas, max_replicas, current, stabilized, history, now
    )

    limited_by: LimitedBy
    detail: str
    if rate_limit is not None:
        limited_by = rate_limit
        detail = {
            LimitedBy.SCALE_UP_POLICY: f"scale-up policies allow at most {desired} now",
            LimitedBy.SCALE_DOWN_POLICY: f"scale-down policies allow at least {desired} now",
            LimitedBy.MAX: f"capped at max {max_replicas}",
            LimitedBy.MIN: f"raised to min {min_replicas}",
        }[rate_limit]
    elif stabilized != raw:
        limited_by = LimitedBy.STABILIZATION
        if raw > current:
            window = behavior.scale_up.stabilization_window_seconds
            detail = (
                f"scale-up stabilization ({window}s) keeps {stabilized}, the lowest recent recommendation"
            )
        else:
            window = behavior.scale_down.stabilization_window_seconds
            detail = (
                f"scale-down stabilization ({window}s) keeps {stabilized}, the highest recent recommendation"
            )
    else:
        limited_by = proposal.limited_by
        detail = ""

    # scalekeeper additions, applied after the HPA's own steps so they can only hold back.
    if floor is not None and desired < current and desired < floor:
        desired = min(current, floor)
        limited_by, detail = LimitedBy.FLOOR, f"not below floor {floor}"
    if desired < current:
        last_up = _last_event_time(history.scale_up_events)
        delay = behavior.scale_down_delay_seconds
        if delay is not None and last_up is not None and now - last_up < delay:
            desired = current
            limited_by = LimitedBy.COOLDOWN
            detail = f"no scale-down within {delay:g}s of the last scale-up ({now - last_up:g}s ago)"
    cooldown = behavior.cooldown_seconds
    last = history.last_scale_time
    if desired != current and cooldown is not None and last is not None and now - last < cooldown:
        desired = current
        limited_by = LimitedBy.COOLDOWN
        detail = f"no change within {cooldown:g}s of the last one ({now - last:g}s ago)"
    if cap is not None and desired > current and desired > cap:
        desired = max(current, cap)
        limited_by = LimitedBy.CONNECTION_BUDGET
        detail = cap_reason or f"connection budget allows at most {desired}"

    reason = f"{proposal.reason}; {_move(current, desired)}"
    if detail:
        reason = f"{reason} ({detail})"
    if proposal.missing:
        # Scaling up on the metrics that worked, as the HPA does; say what was left out.
        reason = f"{reason}; ignored: {'; '.join(proposal.missing)}"
    return finish(desired, limited_by, reason)


def decide_plan(plan: TargetPlan, now: float, cap: int | None = None, cap_reason: str = "") -> TargetDecision:
    """`decide_target` on a whole plan (see TargetPlan)."""
    return decide_target(
        plan.behavior,
        plan.min_replicas,
        plan.max_replicas,
        plan.current,
        plan.proposal,
        plan.history,
        now,
        floor=plan.floor,
        cap=cap,
        cap_reason=cap_reason,
    )
