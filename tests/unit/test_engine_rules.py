"""Properties of the HPA-style normalization (engine.rules), thousands of cases each.

The strategies are kept flat on purpose: nested builds/one_of/lists cost milliseconds per
example, and every property runs thousands of times. The stored history, which only has to
be "any state an operator could have left", is grown from one drawn seed.
"""

from __future__ import annotations

import math
import random

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from scalekeeper.engine.rules import decide_target, stabilize
from scalekeeper.engine.sizing import Reading, size_by_rate
from scalekeeper.engine.types import (
    EffectiveBehavior,
    LimitedBy,
    PolicyType,
    Proposal,
    RateLimit,
    Recommendation,
    ScaleEvent,
    ScalingRules,
    SelectPolicy,
    TargetHistory,
)

NOW = 100_000.0

_WINDOWS = (0, 15, 30, 60, 300, 0, 45, 120, 600, 900)
_PERIODS = (15, 30, 60, 120, 1, 7, 45, 300, 600, 900)
_SELECTS = (SelectPolicy.MAX, SelectPolicy.MAX, SelectPolicy.MIN, SelectPolicy.DISABLED)
_TOLERANCES = (0.0, 0.05, 0.1, 0.2, 0.5)

windows = st.sampled_from(_WINDOWS)
periods = st.sampled_from(_PERIODS)


def _policy(kind: int, value: int, period: int, up: bool) -> RateLimit:
    if kind == 0:
        return RateLimit(PolicyType.PODS, 1 + value % 20, period)
    return RateLimit(PolicyType.PERCENT, 1 + value % (500 if up else 100), period)


def policies(up: bool, period: st.SearchStrategy[int] = periods) -> st.SearchStrategy[RateLimit]:
    return st.tuples(st.integers(0, 1), st.integers(0, 499), period).map(
        lambda t: _policy(t[0], t[1], t[2], up)
    )


def _rules(up: bool, packed: tuple[int, int, int, int, int]) -> ScalingRules:
    window, select, *codes = packed
    # codes[0] is always a policy; the others only when below 10**4 (else "absent").
    chosen = tuple(
        _policy(code % 2, (code // 2) % 500, _PERIODS[(code // 1000) % len(_PERIODS)], up)
        for i, code in enumerate(codes)
        if i == 0 or code < 10**4
    )
    return ScalingRules(_WINDOWS[window], _SELECTS[select], chosen)


def rules(up: bool) -> st.SearchStrategy[ScalingRules]:
    code = st.integers(0, 2 * 10**4 - 1)
    return st.tuples(
        st.integers(0, len(_WINDOWS) - 1), st.integers(0, len(_SELECTS) - 1), code, code, code
    ).map(lambda packed: _rules(up, packed))


behaviors = st.builds(EffectiveBehavior, rules(True), rules(False), st.sampled_from(_TOLERANCES))


def random_history(seed: int, now: float = NOW) -> TargetHistory:
    """Any stored state, including ones an older operator or a human could have left."""
    rng = random.Random(seed)

    def age() -> float:
        return float(rng.randint(0, 1200)) if rng.random() < 0.8 else rng.uniform(0, 1200)

    recs = tuple(Recommendation(rng.randint(0, 80), now - age()) for _ in range(rng.randint(0, 12)))
    ups = tuple(
        ScaleEvent(rng.randint(1, 20), now - age(), rng.random() < 0.3) for _ in range(rng.randint(0, 5))
    )
    downs = tuple(
        ScaleEvent(rng.randint(1, 20), now - age(), rng.random() < 0.3) for _ in range(rng.randint(0, 5))
    )
    last = max((e.timestamp for e in ups + downs), default=None)
    return TargetHistory(recs, ups, downs, last, None)


def histories(now: float = NOW) -> st.SearchStrategy[TargetHistory]:
    return st.integers(0, 2**32 - 1).map(lambda seed: random_history(seed, now))


MANY = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _bounds(t: tuple[int, int, int], inside: bool) -> tuple[int, int, int]:
    lo, span, position = t
    hi = max(lo + span, 1)
    if inside:
        return lo, hi, max(lo, 1) + position % (hi - max(lo, 1) + 1)
    return lo, hi, position


def bounds(inside: bool = False) -> st.SearchStrategy[tuple[int, int, int]]:
    """(min, max, current); current anywhere in 0..70, or within [max(min, 1), max]."""
    return st.tuples(st.integers(0, 10), st.integers(0, 50), st.integers(0, 70)).map(
        lambda t: _bounds(t, inside)
    )


raws = st.one_of(st.none(), st.integers(0, 200))


@MANY
@given(behaviors, bounds(), raws, histories(), st.one_of(st.none(), st.integers(0, 60)))
def test_within_bounds_deterministic_and_serialisable(
    behavior: EffectiveBehavior,
    b: tuple[int, int, int],
    raw: int | None,
    history: TargetHistory,
    floor: int | None,
) -> None:
    # Several properties of one decision, checked together so the suite pays for the
    # example generation once.
    lo, hi, current = b
    if floor is not None:
        floor = min(max(floor, lo), hi)
    d = decide_target(behavior, lo, hi, current, raw, history, NOW, floor=floor)
    # Always within [min, max]; never below the floor on a scale-down.
    assert lo <= d.desired <= hi
    if floor is not None and d.desired < current:
        assert d.desired >= floor
    # Same input, same output.
    assert decide_target(behavior, lo, hi, current, raw, history, NOW, floor=floor) == d
    # The history survives the trip through the status.
    assert TargetHistory.from_dict(d.history.to_dict()) == d.history
    # The decision and the stored scale events agree.
    if d.desired > current:
        assert d.history.scale_up_events[-1:] != () and d.history.last_scale_time == NOW
    elif d.desired == current:
        assert d.history.scale_up_events == history.scale_up_events
        assert d.history.scale_down_events == history.scale_down_events


@MANY
@given(
    behaviors,
    bounds(inside=True),
    histories(),
    st.integers(1, 1000),
    st.floats(-1, 1, allow_nan=False),
)
def test_no_change_inside_tolerance_band(
    behavior: EffectiveBehavior,
    b: tuple[int, int, int],
    history: TargetHistory,
    per_replica: int,
    position: float,
) -> None:
    lo, hi, current = b
    # A load whose usage ratio is within [1 - tolerance, 1 + tolerance] (nudged inward so the
    # float product cannot land a hair outside).
    ratio = 1 + position * behavior.tolerance * (1 - 1e-9)
    load = ratio * per_replica * current
    proposal = size_by_rate(Reading("rate", load), per_replica, current, behavior.tolerance, what="rate")
    assert proposal.replicas == current
    assert proposal.limited_by is LimitedBy.TOLERANCE
    d = decide_target(behavior, lo, hi, current, proposal, history, NOW)
    assert d.desired == current


@MANY
@given(behaviors, bounds(), histories(), st.integers(0, 150), st.integers(0, 150), st.integers(1, 50))
def test_more_load_never_fewer_replicas(
    behavior: EffectiveBehavior,
    b: tuple[int, int, int],
    history: TargetHistory,
    l1: int,
    l2: int,
    per_replica: int,
) -> None:
    lo, hi, current = b
    small, large = sorted((l1, l2))
    tol = behavior.tolerance
    p_small = size_by_rate(Reading("rate", float(small)), per_replica, current, tol, what="rate")
    p_large = size_by_rate(Reading("rate", float(large)), per_replica, current, tol, what="rate")
    assert p_small.replicas is not None and p_large.replicas is not None
    assert p_small.replicas <= p_large.replicas
    d_small = decide_target(behavior, lo, hi, current, p_small, history, NOW)
    d_large = decide_target(behavior, lo, hi, current, p_large, history, NOW)
    assert d_small.desired <= d_large.desired


@MANY
@given(
    behaviors, bounds(inside=True), histories(), st.sampled_from(["absent", "NaN", "negative", "stale"]), raws
)
def test_missing_metric_never_scales_down(
    behavior: EffectiveBehavior, b: tuple[int, int, int], history: TargetHistory, why: str, valid: int | None
) -> None:
    lo, hi, current = b
    problem = f"metric request_rate for web is {why}"
    # Either nothing usable, or another metric still gave a value (HPA: scale up on it only).
    proposal = Proposal(valid, problem, missing=(problem,))
    d = decide_target(behavior, lo, hi, current, proposal, history, NOW)
    assert d.desired >= current
    if valid is None or valid < current:
        assert d.desired == current
        assert d.limited_by is LimitedBy.MISSING_METRIC
        assert why in d.reason
        # The HPA records nothing for a cycle it could not compute.
        assert d.history.recommendations == (history.recommendations or d.history.recommendations)


@MANY
@given(behaviors, st.integers(0, 80), st.integers(0, 200), histories())
def test_stabilization_holds_window_extremes(
    behavior: EffectiveBehavior, current: int, raw: int, history: TargetHistory
) -> None:
    # With rate limits out of the way the decision is exactly the stabilized value:
    # current, clamped to [lowest recommendation in the up window, highest in the down window].
    free = EffectiveBehavior(
        ScalingRules(
            behavior.scale_up.stabilization_window_seconds,
            SelectPolicy.MAX,
            (RateLimit(PolicyType.PODS, 10**6, 1),),
        ),
        ScalingRules(
            behavior.scale_down.stabilization_window_seconds,
            SelectPolicy.MAX,
            (RateLimit(PolicyType.PERCENT, 100, 1),),
        ),
    )
    h = TargetHistory(history.recommendations)
    assume(h.recommendations)
    up_cut = NOW - free.scale_up.stabilization_window_seconds
    down_cut = NOW - free.scale_down.stabilization_window_seconds
    lowest = min([raw] + [r.replicas for r in h.recommendations if r.timestamp > up_cut])
    highest = max([raw] + [r.replicas for r in h.recommendations if r.timestamp > down_cut])
    d = decide_target(free, 0, 10**6, current, raw, h, NOW)
    assert d.desired == min(max(current, lowest), highest)
    if d.desired < current:
        assert d.desired == highest  # a scale-down goes only as far as the window's highest
    if d.desired > current:
        assert d.desired == lowest  # a scale-up goes only as far as the window's lowest
    # The unstabilized recommendation is recorded, overwriting a sample outside both windows.
    stale = [r for r in h.recommendations if r.timestamp < up_cut and r.timestamp < down_cut]
    recs = d.history.recommendations
    assert len(recs) == len(h.recommendations) + (0 if stale else 1)
    assert sum(1 for r in recs if r.timestamp == NOW and r.replicas == raw) >= 1


@st.composite
def rate_cases(draw: st.DrawFn) -> tuple[EffectiveBehavior, int, int, int, int, list[tuple[int, int]]]:
    # Both directions share their longest period L. Otherwise the HPA (and we, since we copy
    # it) may overwrite a scale event that the other direction's longer period still counts,
    # and the window sums below would not hold: a controller quirk, kept on purpose.
    longest = draw(st.integers(1, 600))

    def rules_with(up: bool) -> ScalingRules:
        anchor = draw(policies(up, st.just(longest)))
        extra = draw(st.lists(policies(up, st.integers(1, longest)), max_size=2))
        return ScalingRules(draw(windows), draw(st.sampled_from(SelectPolicy)), (anchor, *extra))

    behavior = EffectiveBehavior(rules_with(True), rules_with(False), draw(st.sampled_from([0.0, 0.1])))
    lo = draw(st.integers(0, 5))
    hi = draw(st.integers(max(lo, 1), 80))
    start = draw(st.integers(lo, hi))
    per_replica = draw(st.integers(1, 20))
    steps = draw(st.lists(st.tuples(st.integers(1, 120), st.integers(0, 2000)), min_size=1, max_size=15))
    return behavior, lo, hi, start, per_replica, steps


def _allowed(rules: ScalingRules, starts: list[int], up: bool) -> int:
    values = []
    for policy, start in zip(rules.policies, starts, strict=True):
        if policy.type is PolicyType.PODS:
            values.append(start + policy.value if up else start - policy.value)
        elif up:
            values.append(math.ceil(start * (1 + policy.value / 100)))
        else:
            values.append(int(start * (1 - policy.value / 100)))
    if rules.select_policy is SelectPolicy.MAX:
        return max(values) if up else min(values)
    return min(values) if up else max(values)


@MANY
@given(rate_cases())
def test_change_per_period_never_exceeds_policies(
    case: tuple[EffectiveBehavior, int, int, int, int, list[tuple[int, int]]],
) -> None:
    behavior, lo, hi, replicas, per_replica, steps = case
    history = TargetHistory()
    now = 10_000.0
    trajectory: list[tuple[float, int]] = []  # (time, replicas after the decision)
    initial = replicas

    def replicas_at(t: float) -> int:
        # Replicas once every change at or before t happened: the size at the start of a
        # period (t, now], since a change exactly at the cutoff is outside the period.
        before = [r for ts, r in trajectory if ts <= t]
        return before[-1] if before else initial

    for dt, load in steps:
        now += dt
        proposal = size_by_rate(
            Reading("rate", float(load)), per_replica, replicas, behavior.tolerance, what="rate"
        )
        d = decide_target(behavior, lo, hi, replicas, proposal, history, now)
        if d.desired > replicas:
            assert behavior.scale_up.select_policy is not SelectPolicy.DISABLED
            starts = [replicas_at(now - p.period_seconds) for p in behavior.scale_up.policies]
            assert d.desired <= _allowed(behavior.scale_up, starts, up=True)
        elif d.desired < replicas:
            assert behavior.scale_down.select_policy is not SelectPolicy.DISABLED
            starts = [replicas_at(now - p.period_seconds) for p in behavior.scale_down.policies]
            assert d.desired >= _allowed(behavior.scale_down, starts, up=False)
        history = d.history
        replicas = d.desired
        trajectory.append((now, replicas))


def test_out_of_range_goes_straight_to_bound() -> None:
    b = EffectiveBehavior()
    high = decide_target(b, 2, 10, 14, 3, TargetHistory(), NOW)
    assert (high.desired, high.limited_by) == (10, LimitedBy.MAX)
    low = decide_target(b, 2, 10, 1, 30, TargetHistory(), NOW)
    assert (low.desired, low.limited_by) == (2, LimitedBy.MIN)
    # Both are scale events: they count against later policy periods.
    assert high.history.scale_down_events[0].change == 4
    assert low.history.scale_up_events[0].change == 1


def test_initial_recommendation_seeds_the_down_window() -> None:
    # Like the HPA, the first sight of a target records its size: no scale-down below it
    # for a whole down window after the operator starts.
    b = EffectiveBehavior()
    d = decide_target(b, 1, 10, 8, 2, TargetHistory(), NOW)
    assert d.desired == 8
    assert d.limited_by is LimitedBy.STABILIZATION
    assert [(r.replicas, r.timestamp) for r in d.history.recommendations] == [(8, NOW), (2, NOW)]


def test_stabilize_replaces_the_last_stale_sample() -> None:
    b = EffectiveBehavior(ScalingRules(0, SelectPolicy.MAX, ()), ScalingRules(60, SelectPolicy.MAX, ()))
    recs = (Recommendation(5, NOW - 500), Recommendation(6, NOW - 10), Recommendation(7, NOW - 400))
    value, recorded = stabilize(b, 8, 3, recs, NOW)
    assert value == 6  # current 8 clamped to [3, highest in the 60 s down window]
    assert recorded == (Recommendation(5, NOW - 500), Recommendation(6, NOW - 10), Recommendation(3, NOW))


def test_scale_down_delay_and_cooldown() -> None:
    b = EffectiveBehavior(scale_down_delay_seconds=120, cooldown_seconds=30)
    free = EffectiveBehavior(
        scale_down=ScalingRules(0, SelectPolicy.MAX, (RateLimit(PolicyType.PERCENT, 100, 15),)),
        scale_down_delay_seconds=120,
        cooldown_seconds=30,
    )
    up = decide_target(b, 1, 20, 2, 6, TargetHistory(), NOW)
    assert up.desired == 6  # HPA default: the larger of +100% and +4 pods per 15 s
    again = decide_target(b, 1, 20, 6, 9, up.history, NOW + 15)
    assert (again.desired, again.limited_by) == (6, LimitedBy.COOLDOWN)
    assert "30s" in again.reason
    down = decide_target(free, 1, 20, 6, 1, up.history, NOW + 60)
    assert (down.desired, down.limited_by) == (6, LimitedBy.COOLDOWN)
    assert "120s" in down.reason
    later = decide_target(free, 1, 20, 6, 1, up.history, NOW + 121)
    assert later.desired == 1


def test_cap_limits_only_scale_ups() -> None:
    b = EffectiveBehavior()
    d = decide_target(b, 1, 50, 4, 12, TargetHistory(), NOW, cap=6, cap_reason="budget")
    assert (d.desired, d.limited_by, d.history.scale_up_events[0].change) == (
        6,
        LimitedBy.CONNECTION_BUDGET,
        2,
    )
    assert "budget" in d.reason
    same = decide_target(b, 1, 50, 4, 12, TargetHistory(), NOW, cap=2)
    assert same.desired == 4  # a cap below current never scales down


def test_history_from_dict_rejects_garbage() -> None:
    import pytest

    for bad in (
        {"recommendations": "x"},
        {"recommendations": [[1]]},
        {"recommendations": [[1.5, 3.0]]},
        {"scaleUpEvents": [[1, float("nan"), False]]},
        {"version": 99},
        {"lastScaleTime": "yesterday"},
        {"backlogSince": float("inf")},
        [],
    ):
        with pytest.raises(ValueError):
            TargetHistory.from_dict(bad)  # type: ignore[arg-type]
    assert TargetHistory.from_dict(None) == TargetHistory()


def test_history_keeps_the_worker_clocks() -> None:
    clocks = TargetHistory(idle_since=NOW - 30, backlog_since=NOW - 90)
    assert TargetHistory.from_dict(clocks.to_dict()) == clocks
    # A history stored before backlogSince existed still reads.
    assert TargetHistory.from_dict({"idleSince": NOW}).backlog_since is None
