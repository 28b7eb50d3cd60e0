"""What a cycle tells: the policy's status (per target and conditions), Events when something changes or
turns bad, and a log line per decision. Reads what the cycle gathered; writes only through `emit`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import model
from .engine.bottleneck import (
    CONNECTIONS,
    Episode,
    Signal,
    Transition,
    Windows,
    advance,
    connection_signals,
    resource_signals,
    tier_signals,
)
from .engine.forecast import FORECAST_METRICS
from .engine.types import LimitedBy, PolicyDecision, TargetDecision
from .memory import PolicyMemory
from .metrics.prometheus import BatchResult, MetricKey, Missing, Sample
from .metrics.saturation import CPU_OF_LIMIT, MEMORY_OF_LIMIT, RESOURCE_METRICS
from .opmetrics import OperatorMetrics
from .policy import PolicyObject
from .tiers.base import EventSink, Observation, Tier

log = logging.getLogger("scalekeeper.reconcile")

# Holds told with a Normal Event (once per (limitedBy, desired)): news a user acts on.
_TOLD_HOLDS = (LimitedBy.MAX, LimitedBy.CONNECTION_BUDGET, LimitedBy.ACTIVATION, LimitedBy.COOLDOWN)
# Limits that make ScalingLimited true.
_LIMITS = (
    LimitedBy.MAX,
    LimitedBy.MIN,
    LimitedBy.FLOOR,
    LimitedBy.SCALE_UP_POLICY,
    LimitedBy.SCALE_DOWN_POLICY,
    LimitedBy.CONNECTION_BUDGET,
    LimitedBy.STABILIZATION,
)


@dataclass
class Cycle:
    """What one cycle of one policy gathered, handed from stage to stage (observe, decide, act, report)."""

    spec: model.ScalingPolicySpec
    policy: PolicyObject
    memory: PolicyMemory
    status: model.ScalingPolicyStatus
    emit: EventSink
    tiers: list[Tier]
    observed: dict[str, Observation] = field(default_factory=dict)
    batch: BatchResult[MetricKey] = field(default_factory=lambda: BatchResult({}, 0, 0.0))
    decision: PolicyDecision | None = None
    errors: list[str] = field(default_factory=list)
    # Targets whose workload is unusable (not found, cannot be created), with why.
    unavailable: dict[str, str] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    # Targets whose objects a server-side dry-run refused, with what the API server said.
    refused: dict[str, str] = field(default_factory=dict)
    # The cycle's wall clock, Unix seconds (the injected one).
    now: float = 0.0
    # Target name -> the key its workload is claimed under; targets named twice in the policy.
    claims: dict[str, str] = field(default_factory=dict)
    twice: dict[str, str] = field(default_factory=dict)

    @property
    def contested(self) -> dict[str, str]:
        return {name: o.contested for name, o in self.observed.items() if o.contested is not None}

    @property
    def unusable(self) -> dict[str, str]:
        """Targets that could not be sized: not found when observed, or not created when acting."""
        found = {name: o.missing for name, o in self.observed.items() if o.missing is not None}
        return {**found, **self.unavailable}


@dataclass
class Conditions:
    """Sets conditions on the status and tells, with an Event, when one turns bad or recovers."""

    status: model.ScalingPolicyStatus
    memory: PolicyMemory
    emit: EventSink
    # The cycle's wall clock (Unix seconds): a condition's lastTransitionTime.
    now: float

    def set(
        self, type_: model.ConditionType, value: model.ConditionStatus, reason: str, message: str
    ) -> None:
        when = datetime.fromtimestamp(self.now, UTC).replace(microsecond=0)
        self.status.set_condition(type_, value, reason, message, now=when)
        before = self.memory.conditions.get(type_.value)
        now = (value.value, reason)
        self.memory.conditions[type_.value] = now
        # Bottleneck is told once per episode of each target (Reporter._bottlenecks), not per change of the
        # condition's reason or of the targets it names.
        if type_ in (model.ConditionType.SCALING_LIMITED, model.ConditionType.BOTTLENECK) or before == now:
            return
        bad = value is (
            model.ConditionStatus.TRUE
            if type_ is model.ConditionType.CONFLICT
            else model.ConditionStatus.FALSE
        )
        # Told once when a condition turns bad, and once when it recovers; a good first state is quiet.
        if bad or before is not None:
            self.emit("Warning" if bad else "Normal", reason, f"{type_.value}={value.value}: {message}")


class Reporter:
    def __init__(self, metrics: OperatorMetrics, log_every_decision: bool) -> None:
        self._metrics = metrics
        self._log_every_decision = log_every_decision

    def report(self, c: Cycle) -> None:
        assert c.decision is not None
        dry = c.spec.mode is model.Mode.DRY_RUN
        contested, unusable = c.contested, c.unusable
        cells: dict[str, list[str]] = {}
        targets: list[model.TargetStatus] = []
        for tier in c.tiers:
            name, d, seen = tier.name, c.decision.targets[tier.name], c.observed[tier.name]
            ref = tier.target()
            current = seen.shown_current(d)
            reason = d.reason if d.exists else contested.get(name) or unusable.get(name, d.reason)
            if dry and d.changes:
                reason = f"DryRun: would scale {d.current} -> {d.desired}: {reason}"
            targets.append(
                model.TargetStatus(
                    name=name,
                    kind=ref.kind,
                    target_ref=ref.name,
                    current_replicas=current,
                    desired_replicas=d.desired,
                    limited_by=LimitedBy.CONFLICT if name in contested else d.limited_by,
                    reason=reason,
                    metrics={k: round(v, 4) for k, v in d.metrics.items()},
                    last_scale_time=c.memory.last_scale_time.get(name),
                    history=_history_to_persist(name, c.memory),
                )
            )
            label = tier.cell_label()
            cell = f"{current}/{d.desired}"
            cells.setdefault(tier.summary, []).append(cell if label is None else f"{label} {cell}")
            if name not in c.failed:
                # A write that failed is told by the errors (condition and Warning), not as "Scaled".
                _announce(tier, d, c.memory, c.emit, dry)
            self._metrics.decision(
                c.policy.namespace, c.policy.name, name, d.limited_by.value, d.desired, current
            )
            self._log(c, name, d, reason)
        c.status.targets = targets
        c.status.web = ", ".join(cells.get("web", [])) or None
        c.status.workers = ", ".join(cells.get("workers", [])) or None
        c.status.read_replicas = ", ".join(cells.get("readReplicas", [])) or None
        self._bottlenecks(c)
        self._conditions(c)

    @staticmethod
    def _bottlenecks(c: Cycle) -> None:
        """Advance each target's bottleneck episode (and the connection budget's) by this cycle's signals: a
        Warning Event when one starts, a Normal one when it ends; the active ones go to the status."""
        assert c.decision is not None
        held: dict[str, tuple[Signal, ...]] = {}
        for tier in c.tiers:
            if c.observed[tier.name].contested is not None:
                continue  # sized by another policy: its saturation is that policy's to tell
            signals, baseline = tier_signals(
                c.decision.targets[tier.name], tier.growth(), c.memory.at_max_load.get(tier.name)
            )
            cpu, memory = (_read(c.batch, MetricKey(tier.name, m)) for m in (CPU_OF_LIMIT, MEMORY_OF_LIMIT))
            held[tier.name] = signals + resource_signals(cpu, memory)
            if baseline is None:
                c.memory.at_max_load.pop(tier.name, None)
            else:
                c.memory.at_max_load[tier.name] = baseline
        held[CONNECTIONS] = connection_signals(c.decision.connections)
        windows = Windows.for_interval(c.spec.interval_seconds)
        # A target gone from the spec ends its episode quietly: there is nothing left to raise.
        episodes: dict[str, Episode] = {}
        for name, signals in held.items():
            episode, change = advance(c.memory.episodes.get(name, Episode()), signals, c.now, windows)
            if episode.active or episode.held_since is not None:
                episodes[name] = episode
            if change is Transition.STARTED:
                c.emit(
                    "Warning",
                    "Bottleneck",
                    f"{name} saturated for {windows.hold_seconds:g}s: {_told(episode.signals)}",
                )
            elif change is Transition.ENDED:
                c.emit("Normal", "BottleneckCleared", f"{name} clear for {windows.clear_seconds:g}s")
        c.memory.episodes = episodes
        active = [
            model.BottleneckStatus(
                name=name,
                reason=e.signals[0].reason,
                message=_told(e.signals),
                since=None if e.started is None else datetime.fromtimestamp(e.started, UTC),
            )
            for name, e in episodes.items()
            if e.active and e.signals
        ]
        c.status.bottlenecks = active
        c.status.bottleneck = ", ".join(b.name for b in active) or "none"

    def _log(self, c: Cycle, name: str, d: TargetDecision, reason: str) -> None:
        logged = (d.current, d.desired, d.limited_by.value)
        level = logging.INFO
        if c.memory.logged.get(name) == logged and not self._log_every_decision:
            level = logging.DEBUG
        c.memory.logged[name] = logged
        log.log(
            level,
            "decision",
            extra={
                "policy": f"{c.policy.namespace}/{c.policy.name}",
                "target": name,
                "current": d.current,
                "desired": d.desired,
                "raw": d.raw,
                "limited_by": d.limited_by.value,
                "reason": reason,
                "metrics": dict(d.metrics),
                "mode": c.spec.mode.value,
            },
        )

    def _conditions(self, c: Cycle) -> None:
        assert c.decision is not None
        T, F = model.ConditionStatus.TRUE, model.ConditionStatus.FALSE
        C = model.ConditionType
        conditions = Conditions(c.status, c.memory, c.emit, c.now)
        if c.refused:
            refusals = "; ".join(f"{name}: {why}" for name, why in c.refused.items())
            conditions.set(C.SPEC_VALID, F, "RefusedByAPIServer", refusals)
        else:
            conditions.set(C.SPEC_VALID, T, "Valid", "spec is valid")
        # A forecast without data (less history than a season) is told in the target's reason; it
        # blocks nothing, so it does not make the metrics unavailable.
        # Nor do the resource readings (no cAdvisor series, or no limits): they only feed the Bottleneck
        # condition.
        missing = {
            k: r
            for k, r in c.batch.readings.items()
            if isinstance(r, Missing)
            and k.metric not in FORECAST_METRICS
            and k.metric not in RESOURCE_METRICS
        }
        invalid = [
            f"{name}: {d.reason}"
            for name, d in c.decision.targets.items()
            if d.limited_by is LimitedBy.MISSING_METRIC
        ]
        self._metrics.metrics_read(c.policy.namespace, c.policy.name, not (missing or invalid))
        if missing or invalid:
            parts = [f"{k}: {r.reason} (query: {r.query})" for k, r in missing.items()]
            parts += [p for p in invalid if not any(p.startswith(k.target) for k in missing)]
            conditions.set(C.METRICS_AVAILABLE, F, "MetricsUnavailable", "; ".join(parts))
        else:
            conditions.set(C.METRICS_AVAILABLE, T, "MetricsRead", f"{len(c.batch.readings)} metrics read")

        contested = c.contested
        foreign = [o.conflict for o in c.observed.values() if o.conflict is not None]
        if contested:
            message = "; ".join(f"{name}: {why}" for name, why in contested.items())
            within = all(o.contested_within for o in c.observed.values() if o.contested is not None)
            reason = "TargetNamedTwice" if within else "TargetSizedByOlderPolicy"
            conditions.set(C.CONFLICT, T, reason, message)
        elif foreign:
            conditions.set(C.CONFLICT, T, foreign[0].reason, "; ".join(f.message for f in foreign))
        else:
            conditions.set(C.CONFLICT, F, "NoConflict", "no other autoscaler targets these workloads")

        limited = [
            f"{name}: {d.limited_by.value}"
            for name, d in c.decision.targets.items()
            if d.limited_by in _LIMITS
        ]
        if limited:
            conditions.set(C.SCALING_LIMITED, T, "Limited", "; ".join(limited))
        else:
            conditions.set(C.SCALING_LIMITED, F, "Unlimited", "every target is at its recommendation")

        bottlenecks = c.status.bottlenecks or []
        if bottlenecks:
            told = "; ".join(f"{b.name}: {b.message}" for b in bottlenecks)
            conditions.set(C.BOTTLENECK, T, bottlenecks[0].reason, told)
        else:
            # Said here, not as a fault: a Prometheus without the kubelet's cAdvisor series, or containers
            # without limits, leave CPU and memory out; sizing does not read them.
            unread = [
                t.name
                for t in c.tiers
                if not any(
                    isinstance(c.batch.readings.get(MetricKey(t.name, m)), Sample) for m in RESOURCE_METRICS
                )
            ]
            told = "no target saturated for a while"
            if unread:
                told += (
                    f" (CPU and memory not evaluated for {', '.join(unread)}: no pods, or no cAdvisor series"
                    " with limits)"
                )
            conditions.set(C.BOTTLENECK, F, "NoBottleneck", told)

        protected = [
            t.name for t in c.tiers if t.protects_busy_pods() and c.observed[t.name].contested is None
        ]
        if protected:
            bare = [
                f"{name}: {c.memory.unprotected[name]}" for name in protected if name in c.memory.unprotected
            ]
            if bare:
                conditions.set(C.BUSY_WORKERS_PROTECTED, F, "ScaleDownUnprotected", "; ".join(bare))
            else:
                conditions.set(
                    C.BUSY_WORKERS_PROTECTED,
                    T,
                    "Protected",
                    "scale-downs set each pod's deletion cost from its executing tasks first",
                )

        unavailable = c.unusable
        problems = [f"{name}: {why}" for name, why in unavailable.items()] + c.errors
        problems += [f.problem for f in foreign]
        problems += [f"{name}: sized by another policy" for name in contested]
        if problems:
            reason = "Degraded"
            if c.refused:
                reason = "SpecRefused"
            elif unavailable:
                reason = "TargetsUnavailable"
            elif contested or foreign:
                reason = "Conflict"
            conditions.set(C.READY, F, reason, "; ".join(problems))
        else:
            mode = (
                "DryRun: decisions recorded, nothing written"
                if c.spec.mode is model.Mode.DRY_RUN
                else "sizing every target"
            )
            conditions.set(C.READY, T, "Reconciled", mode)

    @staticmethod
    def invalid_spec(
        status: model.ScalingPolicyStatus,
        memory: PolicyMemory,
        emit: EventSink,
        exc: model.SpecError,
        now: float,
    ) -> None:
        message = "; ".join(exc.messages)
        F = model.ConditionStatus.FALSE
        conditions = Conditions(status, memory, emit, now)
        conditions.set(model.ConditionType.SPEC_VALID, F, "InvalidSpec", message)
        conditions.set(model.ConditionType.READY, F, "InvalidSpec", f"nothing is scaled: {message}")
        if memory.announced.get("__spec__") != ("invalid", 0):
            emit("Warning", "InvalidSpec", message)
            memory.announced["__spec__"] = ("invalid", 0)


def _read(batch: BatchResult[MetricKey], key: MetricKey) -> float | None:
    reading = batch.readings.get(key)
    return reading.value if isinstance(reading, Sample) else None


def _told(signals: tuple[Signal, ...]) -> str:
    return "; ".join(s.message for s in signals)


def _history_to_persist(name: str, memory: PolicyMemory) -> dict[str, object] | None:
    """The history as of the last scale event: rewritten only when the events change (a write is due then
    anyway), so idle cycles still cost no status write."""
    assert memory.persisted is not None
    current = memory.histories.get(name)
    if current is None:
        return memory.persisted.get(name)
    previous = memory.persisted.get(name)
    doc = current.to_dict()
    # Not backlogSince: it turns over whenever the queue empties, and a stale one after a restart
    # only lets the drain estimate trust the completion rate one window early.
    keys = ("scaleUpEvents", "scaleDownEvents", "lastScaleTime", "idleSince")
    if previous is None or any(previous.get(k) != doc.get(k) for k in keys):
        memory.persisted[name] = doc
    return memory.persisted[name]


def _announce(tier: Tier, d: TargetDecision, memory: PolicyMemory, emit: EventSink, dry: bool) -> None:
    name = tier.name
    key = (d.limited_by.value, d.desired)
    if d.changes:
        verb = "WouldScale" if dry else "Scaled"
        prefix = "DryRun: would scale" if dry else "Scaled"
        emit("Normal", verb, f"{prefix} {tier.subject()} {d.current} -> {d.desired}: {d.reason}")
    elif d.limited_by is LimitedBy.MISSING_METRIC and memory.announced.get(name) != key:
        emit("Warning", "Holding", f"Holding {name} at {d.current}: {d.reason}")
    elif (
        d.limited_by in _TOLD_HOLDS
        and memory.announced.get(name) != key
        # An idle queue resting at zero is the normal state, not news: activation is told only
        # while some tasks wait below the threshold.
        and not (d.limited_by is LimitedBy.ACTIVATION and not d.metrics.get("load"))
    ):
        emit("Normal", "Holding", f"Holding {name} at {d.current}: {d.reason}")
    memory.announced[name] = key
