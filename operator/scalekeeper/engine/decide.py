"""The policy-level decision: one ScalingPolicy spec + observations -> a decision per target.

Pure: the operator gathers replicas, metric samples and the stored histories, calls `decide`,
then writes replicas (unless DryRun) and stores `PolicyDecision.histories()` for next time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .. import model
from .forecast import ForecastInput, raise_to_forecast
from .rules import decide_target
from .sizing import Reading, SampleInput, WorkerParams, read_metric, size_by_rate, size_worker
from .types import (
    Behavior,
    LimitedBy,
    PolicyType,
    Proposal,
    ScalingPolicy,
    ScalingRules,
    SelectPolicy,
    TargetDecision,
    TargetHistory,
)

WEB = "web"
READ_REPLICAS = "readReplicas"

# Metric names the operator uses as keys of `samples[target]`.
REQUEST_RATE = "request_rate"
WAITING = "waiting"
IN_FLIGHT = "in_flight"
ARRIVAL_RATE = "arrival_rate"
COMPLETION_RATE = "completion_rate"
READ_LOAD = "load"
# A target's seasonal forecast readings (see engine/forecast.py), under the same target name.
FORECAST_PEAK = "forecast_peak"
FORECAST_THEN = "forecast_then"
FORECAST_RECENT = "forecast_recent"
FORECAST_METRICS = (FORECAST_PEAK, FORECAST_THEN, FORECAST_RECENT)

# Prometheus scrapes every 15-30 s; a value not refreshed for two minutes comes from a dead
# exporter or a vanished series, and acting on it would be acting on the past.
DEFAULT_MAX_METRIC_AGE_SECONDS = 120.0


def worker_target(queue: str) -> str:
    return f"worker/{queue}"


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


_SELECT = {m.value: m for m in SelectPolicy}
_POLICY_TYPE = {m.value: m for m in PolicyType}


def _rules_from_model(rules: model.HPAScalingRules) -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=rules.stabilization_window_seconds,
        select_policy=_SELECT[rules.select_policy.value],
        policies=tuple(
            ScalingPolicy(_POLICY_TYPE[p.type.value], p.value, p.period_seconds) for p in rules.policies
        ),
    )


def behavior_from_model(behavior: model.Behavior) -> Behavior:
    """The engine's view of a spec behavior (all HPA defaults already resolved by the model)."""
    return Behavior(
        scale_up=_rules_from_model(behavior.effective_rules("up")),
        scale_down=_rules_from_model(behavior.effective_rules("down")),
        tolerance=behavior.tolerance,
        scale_down_delay_seconds=(
            None if behavior.scale_down_delay_seconds is None else float(behavior.scale_down_delay_seconds)
        ),
        cooldown_seconds=None if behavior.cooldown_seconds is None else float(behavior.cooldown_seconds),
    )


def worker_params(worker: model.WorkerSpec) -> WorkerParams:
    return WorkerParams(
        queue=worker.queue,
        concurrency=worker.concurrency,
        prefetch_multiplier=worker.prefetch_multiplier,
        tasks_per_worker=None if worker.tasks_per_worker is None else float(worker.tasks_per_worker),
        drain_seconds=None if worker.drain_seconds is None else float(worker.drain_seconds),
        activation_tasks=float(worker.activation_tasks),
        cooldown_seconds=float(worker.cooldown_seconds),
        min_replicas=worker.min_replicas,
        rate_window_seconds=worker.completion_rate_window_seconds(),
    )


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


def _absent_target(name: str, history: TargetHistory) -> TargetDecision:
    return TargetDecision(
        current=0,
        desired=0,
        limited_by=LimitedBy.NONE,
        reason=f"{name}: target does not exist; nothing to scale",
        history=history,
        exists=False,
    )


@dataclass
class _Pending:
    """A target's inputs kept for a second pass when the connection budget cuts it."""

    behavior: Behavior
    min_replicas: int
    max_replicas: int
    current: int
    proposal: Proposal
    history: TargetHistory
    floor: int | None = None


def _run(p: _Pending, now: float, cap: int | None = None, cap_reason: str = "") -> TargetDecision:
    return decide_target(
        p.behavior,
        p.min_replicas,
        p.max_replicas,
        p.current,
        p.proposal,
        p.history,
        now,
        floor=p.floor,
        cap=cap,
        cap_reason=cap_reason,
    )


def decide(
    spec: model.ScalingPolicySpec,
    observed: Mapping[str, ObservedTarget | int | None],
    samples: Mapping[str, Mapping[str, SampleInput]],
    histories: Mapping[str, TargetHistory | Mapping[str, Any] | None],
    now: float,
    *,
    max_metric_age_seconds: float | None = DEFAULT_MAX_METRIC_AGE_SECONDS,
) -> PolicyDecision:
    """Decide every target of a policy for the cycle at `now` (seconds, any fixed epoch).

    observed[name]: current replicas (or ObservedTarget, or None when the object is missing).
    samples[name][metric]: value or (value, unix timestamp); see the metric name constants.
    histories[name]: the previous cycle's `PolicyDecision.histories()[name]` (or None).
    Target names are those of `spec.target_names()`: web, worker/<queue>, readReplicas.
    The decision does not depend on `spec.mode`; DryRun only stops the operator writing it.
    """
    notes: list[str] = []
    decisions: dict[str, TargetDecision] = {}
    pending: dict[str, _Pending] = {}

    def reading(target: str, metric: str, label: str) -> Reading:
        return read_metric(label, samples.get(target, {}).get(metric), now, max_metric_age_seconds)

    def forecast(target: str, config: model.Forecast | None) -> ForecastInput | None:
        if config is None:
            return None
        return ForecastInput(
            *(reading(target, m, f"{m.replace('_', ' ')} for {target}") for m in FORECAST_METRICS)
        )

    if spec.web is not None:
        web = spec.web
        obs = _observed(observed.get(WEB))
        history = _history(WEB, histories.get(WEB), notes)
        behavior = behavior_from_model(web.behavior)
        if not obs.exists:
            decisions[WEB] = _absent_target(f"web Deployment {web.deployment}", history)
        elif web.request_rate is None:
            # Without a request-rate signal the owned HPA sizes web alone on cpu/memory;
            # scalekeeper's floor is just minReplicas and there is nothing to remember.
            decisions[WEB] = TargetDecision(
                current=obs.replicas,
                desired=web.min_replicas,
                limited_by=LimitedBy.MIN,
                reason=f"no requestRate configured; HPA floor stays at minReplicas {web.min_replicas}",
                history=history,
            )
        else:
            rate = reading(WEB, REQUEST_RATE, "metric request_rate for web")
            proposal = size_by_rate(
                rate,
                web.request_rate.per_replica,
                obs.replicas,
                behavior.tolerance,
                what="request rate",
                key=REQUEST_RATE,
            )
            proposal = raise_to_forecast(
                proposal, forecast(WEB, web.request_rate.forecast), web.request_rate.per_replica
            )
            pending[WEB] = _Pending(
                behavior, web.min_replicas, web.max_replicas, obs.replicas, proposal, history
            )

    for worker in spec.workers or []:
        name = worker_target(worker.queue)
        obs = _observed(observed.get(name))
        history = _history(name, histories.get(name), notes)
        if not obs.exists:
            decisions[name] = _absent_target(f"worker Deployment for queue {worker.queue}", history)
            continue
        behavior = behavior_from_model(worker.behavior)
        q = worker.queue
        sizing = size_worker(
            worker_params(worker),
            obs.replicas,
            behavior.tolerance,
            now,
            waiting=reading(name, WAITING, f"metric waiting for queue {q}"),
            in_flight=reading(name, IN_FLIGHT, f"metric in_flight for queue {q}"),
            arrival_rate=reading(name, ARRIVAL_RATE, f"metric arrival_rate for queue {q}"),
            completion_rate=reading(name, COMPLETION_RATE, f"metric completion_rate for queue {q}"),
            idle_since=history.idle_since,
            ready=obs.ready,
            backlog_since=history.backlog_since,
        )
        history = replace(history, idle_since=sizing.idle_since, backlog_since=sizing.backlog_since)
        params = worker_params(worker)
        proposal = raise_to_forecast(
            sizing.proposal, forecast(name, worker.forecast), params.effective_tasks_per_worker
        )
        pending[name] = _Pending(
            behavior, worker.min_replicas, worker.max_replicas, obs.replicas, proposal, history
        )

    if spec.read_replicas is not None:
        rr = spec.read_replicas
        obs = _observed(observed.get(READ_REPLICAS))
        history = _history(READ_REPLICAS, histories.get(READ_REPLICAS), notes)
        if not obs.exists:
            decisions[READ_REPLICAS] = _absent_target(f"read replicas {rr.target.name}", history)
        else:
            behavior = behavior_from_model(rr.behavior)
            load = reading(READ_REPLICAS, READ_LOAD, "metric load for readReplicas")
            proposal = size_by_rate(
                load, rr.metric.per_replica, obs.replicas, behavior.tolerance, what="load", key=READ_LOAD
            )
            proposal = raise_to_forecast(
                proposal, forecast(READ_REPLICAS, rr.metric.forecast), rr.metric.per_replica
            )
            pending[READ_REPLICAS] = _Pending(
                behavior,
                rr.min_replicas,
                rr.max_replicas,
                obs.replicas,
                proposal,
                history,
                floor=rr.effective_floor,
            )

    for name, p in pending.items():
        decisions[name] = _run(p, now)

    connections: ConnectionUsage | None = None
    web_max: int | None = None
    if spec.connection_budget is not None:
        web_obs = _observed(observed.get(WEB))
        connections, web_max = _apply_budget(
            spec, spec.connection_budget, decisions, pending, now, notes, web_obs.running
        )

    ordered = {name: decisions[name] for name in spec.target_names() if name in decisions}
    return PolicyDecision(spec.mode.value, ordered, connections, web_max, tuple(notes))


def _apply_budget(
    spec: model.ScalingPolicySpec,
    budget: model.ConnectionBudget,
    decisions: dict[str, TargetDecision],
    pending: dict[str, _Pending],
    now: float,
    notes: list[str],
    web_running: int | None,
) -> tuple[ConnectionUsage, int | None]:
    """Cut scale-ups (workers first, then web) until the connections fit; mutates `decisions`."""
    worker_names = [worker_target(w.queue) for w in spec.workers or [] if worker_target(w.queue) in pending]
    sizes = {name: decisions[name].desired for name in worker_names}
    web_d = decisions.get(WEB)
    web_floor = web_d.desired if web_d is not None and web_d.exists else 0
    web_current = web_d.current if web_d is not None and web_d.exists else 0
    # Web pods are max(what runs, the floor): the owned HPA may run more than the floor on
    # cpu/memory, and a raised floor lifts it. `running` says what runs when the operator
    # passes the floor as `replicas`.
    web_running = web_running if web_running is not None else web_current

    def web_pods(floor: int) -> int:
        return max(web_running, floor) if web_d is not None and web_d.exists else 0

    def total(web_pods: int) -> int:
        return (
            web_pods * budget.web_pool_size + sum(sizes.values()) * budget.worker_pool_size + budget.reserved
        )

    limit = budget.max_connections
    before = total(web_pods(web_floor))
    cut: dict[str, int] = {}
    if before > limit:
        while total(web_pods(web_floor)) > limit:
            growing = [
                n for n in worker_names if sizes[n] > decisions[n].current and budget.worker_pool_size > 0
            ]
            if not growing:
                break
            # Take from the largest remaining scale-up; among equals, from the last listed queue,
            # so the spec's order doubles as priority.
            victim = max(reversed(growing), key=lambda n: sizes[n] - decisions[n].current)
            sizes[victim] -= 1
            cut[victim] = sizes[victim]
        if WEB in pending and budget.web_pool_size > 0:
            # Lower a raised floor back toward its old value, never below it, and only while
            # that removes pods (a floor under what already runs costs nothing).
            while total(web_pods(web_floor)) > limit and web_floor > max(web_current, web_running):
                web_floor -= 1
                cut[WEB] = web_floor
        after = total(web_pods(web_floor))
        summary = f"connections {before} > maxConnections {limit}"
        for name, value in cut.items():
            reason = f"{summary}: scale-up held to {value} to fit the connection budget"
            decisions[name] = _run(pending[name], now, cap=value, cap_reason=reason)
        if after > limit:
            notes.append(
                f"connection budget exceeded even without scale-ups: {after} > maxConnections {limit}"
            )
    worker_pods = sum(sizes.values())
    web_max: int | None = None
    if budget.web_pool_size > 0:
        room = limit - budget.reserved - worker_pods * budget.worker_pool_size
        web_max = max(0, math.floor(room / budget.web_pool_size))
    usage = ConnectionUsage(web_pods(web_floor), worker_pods, total(web_pods(web_floor)), limit)
    return usage, web_max
