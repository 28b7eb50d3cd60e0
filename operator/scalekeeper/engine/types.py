"""Frozen value types shared by the engine's stages.

Everything here is plain data: no I/O, no clock, hashable where it can be, so a decision is
a pure function of its inputs and two runs with the same inputs compare equal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# One vocabulary for the spec, the engine and the status: the model's enums (plain StrEnums, no I/O).
from ..model import LimitedBy as LimitedBy
from ..model import PolicyType as PolicyType
from ..model import SelectPolicy as SelectPolicy

HISTORY_FORMAT_VERSION = 1


@dataclass(frozen=True)
class RateLimit:
    """One rate limit: at most `value` pods (or percent) of change per `period_seconds`."""

    type: PolicyType
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    """autoscaling/v2 HPAScalingRules for one direction, with every default already resolved."""

    stabilization_window_seconds: int
    select_policy: SelectPolicy = SelectPolicy.MAX
    policies: tuple[RateLimit, ...] = ()

    @property
    def longest_period_seconds(self) -> int:
        return max((p.period_seconds for p in self.policies), default=0)

    @staticmethod
    def hpa_default_scale_up() -> ScalingRules:
        # The values the API server fills in for an HPA whose behavior omits scaleUp.
        return ScalingRules(
            stabilization_window_seconds=0,
            select_policy=SelectPolicy.MAX,
            policies=(
                RateLimit(PolicyType.PERCENT, 100, 15),
                RateLimit(PolicyType.PODS, 4, 15),
            ),
        )

    @staticmethod
    def hpa_default_scale_down() -> ScalingRules:
        return ScalingRules(
            stabilization_window_seconds=300,
            select_policy=SelectPolicy.MAX,
            policies=(RateLimit(PolicyType.PERCENT, 100, 15),),
        )


@dataclass(frozen=True)
class EffectiveBehavior:
    """Effective behavior of one target.

    `scale_up`/`scale_down`/`tolerance` are exactly the HPA's. The two optional delays are
    scalekeeper's own and are off (None) unless the policy asks for them, so a behavior built
    from plain HPA fields decides exactly as the HPA would.
    """

    scale_up: ScalingRules = field(default_factory=ScalingRules.hpa_default_scale_up)
    scale_down: ScalingRules = field(default_factory=ScalingRules.hpa_default_scale_down)
    tolerance: float = 0.1
    # No scale-down until this long after the last scale-up (absorbs a burst's tail).
    scale_down_delay_seconds: float | None = None
    # Minimum time between two replica changes, in either direction.
    cooldown_seconds: float | None = None


@dataclass(frozen=True)
class Recommendation:
    """An unstabilized recommendation, as the HPA keeps them for its stabilization windows."""

    replicas: int
    timestamp: float


@dataclass(frozen=True)
class ScaleEvent:
    """A past change of replicas; `change` is positive in both lists (the list says the sign)."""

    change: int
    timestamp: float
    # The HPA marks events older than the longest policy period as reusable slots; a marked
    # slot is overwritten by the next event of that direction. The flag is part of the state
    # because which slot gets overwritten changes later sums over longer periods.
    outdated: bool = False


def _finite_number(value: Any, what: str) -> float:
    # type() rather than isinstance(): bool is an int subclass and must not pass as a number.
    kind = type(value)
    if kind is float:
        if math.isfinite(value):
            return float(value)
    elif kind is int:
        return float(value)
    raise ValueError(f"{what} must be a finite number, got {value!r}")


def _integer(value: Any, what: str) -> int:
    if type(value) is not int:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _optional_time(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    return None if value is None else _finite_number(value, key)


def _rows(data: Mapping[str, Any], key: str, sizes: tuple[int, ...]) -> list[Any]:
    value = data.get(key, [])
    if type(value) is not list:
        raise ValueError(f"{key} must be a list, got {type(value).__name__}")
    for row in value:
        if type(row) not in (list, tuple) or len(row) not in sizes:
            raise ValueError(f"{key} entry has the wrong shape: {row!r}")
    return value


def _events(data: Mapping[str, Any], key: str) -> tuple[ScaleEvent, ...]:
    return tuple(
        ScaleEvent(
            _integer(row[0], "change"),
            _finite_number(row[1], "time"),
            bool(row[2]) if len(row) == 3 else False,
        )
        for row in _rows(data, key, (2, 3))
    )


@dataclass(frozen=True)
class TargetHistory:
    """What one target carries from one cycle to the next.

    The operator stores `to_dict()` in the policy's status and hands `from_dict()` back on the
    next cycle; the engine never keeps anything between calls.
    """

    recommendations: tuple[Recommendation, ...] = ()
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()
    last_scale_time: float | None = None
    # Since when the worker backlog has been continuously zero (None while it is not).
    idle_since: float | None = None
    # Since when tasks have been waiting at every cycle (None while none wait): the drain estimate
    # trusts the completion rate as the workers' capacity only once they were busy for its window.
    backlog_since: float | None = None

    def to_dict(self) -> dict[str, Any]:
        # Compact arrays keep the status small: a 300 s window at a 15 s interval is ~20 rows.
        return {
            "version": HISTORY_FORMAT_VERSION,
            "recommendations": [[r.replicas, r.timestamp] for r in self.recommendations],
            "scaleUpEvents": [[e.change, e.timestamp, e.outdated] for e in self.scale_up_events],
            "scaleDownEvents": [[e.change, e.timestamp, e.outdated] for e in self.scale_down_events],
            "lastScaleTime": self.last_scale_time,
            "idleSince": self.idle_since,
            "backlogSince": self.backlog_since,
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any] | None) -> TargetHistory:
        """Parse what `to_dict` wrote; raises ValueError on anything else.

        The stored status is user-editable, so a malformed one must fail loudly here rather
        than deep inside a decision; the operator then starts over with an empty history.
        """
        if data is None:
            return TargetHistory()
        if not isinstance(data, Mapping):
            raise ValueError(f"history must be a mapping, got {type(data).__name__}")
        version = data.get("version", HISTORY_FORMAT_VERSION)
        if version != HISTORY_FORMAT_VERSION:
            raise ValueError(f"unsupported history version {version!r}")
        recommendations = tuple(
            Recommendation(_integer(row[0], "replicas"), _finite_number(row[1], "time"))
            for row in _rows(data, "recommendations", (2,))
        )
        return TargetHistory(
            recommendations=recommendations,
            scale_up_events=_events(data, "scaleUpEvents"),
            scale_down_events=_events(data, "scaleDownEvents"),
            last_scale_time=_optional_time(data, "lastScaleTime"),
            idle_since=_optional_time(data, "idleSince"),
            backlog_since=_optional_time(data, "backlogSince"),
        )


@dataclass(frozen=True)
class Proposal:
    """A sizing stage's raw recommendation for one target.

    `replicas` is None when no metric could be used at all. `missing` names the metrics that
    were unusable (with why); when it is non-empty the proposal may still scale up but never
    down, as the HPA does with a partly failed metric set.
    """

    replicas: int | None
    reason: str
    limited_by: LimitedBy = LimitedBy.NONE
    missing: tuple[str, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TargetDecision:
    """The outcome for one target in one cycle."""

    current: int
    desired: int
    limited_by: LimitedBy
    reason: str
    history: TargetHistory
    # The recommendation before stabilization, rate limits and clamps (None: no usable metric).
    raw: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    # False when the scaled object was not found; then nothing was decided.
    exists: bool = True

    @property
    def changes(self) -> bool:
        return self.desired != self.current


@dataclass(frozen=True)
class ObservedTarget:
    """The scaled object as seen this cycle.

    `replicas` is what the engine sizes from. For web that may be the owned HPA's current
    minReplicas (the floor the engine moves); then `running` gives the pods actually running,
    which is what the connection budget has to count. `ready`: the pods that are ready
    (a Deployment's status.readyReplicas), when known; a worker's drain estimate divides the
    completion rate by them, since pods still starting complete nothing.
    """

    replicas: int
    exists: bool = True
    running: int | None = None
    ready: int | None = None


@dataclass(frozen=True)
class TargetPlan:
    """One target's inputs to the rules: its limits, its current size, the sizing stage's proposal and
    its history. Kept whole so the connection budget can run the rules again with a cap."""

    behavior: EffectiveBehavior
    min_replicas: int
    max_replicas: int
    current: int
    proposal: Proposal
    history: TargetHistory
    floor: int | None = None


@dataclass(frozen=True)
class ConnectionUsage:
    """Database connections the decided sizes would open (web: max(running pods, floor))."""

    web_pods: int
    worker_pods: int
    total: int
    max_connections: int

    @property
    def fits(self) -> bool:
        return self.total <= self.max_connections


@dataclass(frozen=True)
class PolicyDecision:
    mode: str
    targets: Mapping[str, TargetDecision]
    connections: ConnectionUsage | None = None
    # Largest web size the connection budget leaves room for next to the decided workers;
    # the operator can cap the owned HPA's maxReplicas with it.
    web_max_by_budget: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def histories(self) -> dict[str, dict[str, Any]]:
        """What to persist for the next cycle, per target name."""
        return {name: d.history.to_dict() for name, d in self.targets.items()}
