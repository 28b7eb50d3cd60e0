"""One cycle for one ScalingPolicy: observe, decide, act, report.

Observation and action go through the adapters in `kube/` and `metrics/`; the decision is the engine's
pure function. What carries over between cycles (the engine's per-target history, what was last reported)
lives in a `PolicyMemory` the caller keeps per policy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes.client.rest import ApiException

from . import model
from .engine import decide as engine
from .engine.claims import PolicyId, contested, target_key
from .engine.types import LimitedBy, TargetDecision, TargetHistory
from .kube.hpa import HpaClient, HpaState, desired_hpa, hpa_name
from .kube.owners import OwnerRef
from .kube.targets import ReplicaClient, ReplicaState, TargetNotFound, TargetRef, WriteConflict
from .kube.versions import is_older
from .kube.watched import Watched, watched_keys
from .kube.workers import WorkerDeployments
from .metrics.prometheus import BatchResult, Missing, PrometheusReader, Sample
from .opmetrics import OperatorMetrics

log = logging.getLogger("scalekeeper.reconcile")

# Answers that say "not now" rather than "no": throttled by priority and fairness, or a server restarting.
_TRANSIENT = frozenset({429, 500, 502, 503, 504})

# Metric keys of the batched query: "<target>|<metric>", target names as the engine's.
_SEP = "|"


class EventSink(Protocol):
    def __call__(self, type_: str, reason: str, message: str) -> None: ...


# Watches deliver a write within milliseconds, seconds when the API server is loaded. A note of our own
# write that the watch has still not shown after this long is not lag: the object was deleted or
# replaced meanwhile, and the watch is believed again.
WATCH_LAG_LIMIT_SECONDS = 30.0


@dataclass
class PolicyMemory:
    """What one policy carries between cycles inside the operator process."""

    histories: dict[str, TargetHistory] = field(default_factory=dict)
    # Fingerprints of the status last written and of its signature (see `_signature`), not the status
    # itself: a few bytes instead of about 6 KB of dicts per policy, thousands of policies over.
    last_status: tuple[bytes, bytes] | None = None
    last_status_write: float = 0.0
    # Per target: the (limitedBy, desired) pair last announced with an Event, so holds are told once.
    announced: dict[str, tuple[str, int]] = field(default_factory=dict)
    last_scale_time: dict[str, datetime] = field(default_factory=dict)
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)
    # The history last written to status, per target; None until read back from status after a start.
    persisted: dict[str, dict[str, Any]] | None = None
    # Our last write per target: (resourceVersion it was made at, the state the API server answered, when
    # on the monotonic clock). The watches may not have seen it yet at the next cycle; while they show
    # an older version, this is current.
    written: dict[str, tuple[str, ReplicaState, float]] = field(default_factory=dict)
    # The same for the owned HPA: (resourceVersion before, None for a create; the HPA after; when).
    hpa_written: tuple[str | None, dict[str, Any], float] | None = None
    # Per target, the (current, desired, limitedBy) last logged at INFO.
    logged: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    # The spec parsed at this generation: parsed once, not every cycle.
    spec: tuple[int, model.ScalingPolicySpec] | None = None

    def seen_replicas(self, name: str, watched: ReplicaState, now: float) -> ReplicaState:
        """The watch's state, unless it is older than our last write to the target."""
        mine = self.written.get(name)
        if mine is None:
            return watched
        before, after, at = mine
        # Older, not just "at the version we wrote at": a write retried past status changes
        # (ReplicaClient.write_unless_resized) leaves versions between the two that hold the old count.
        if now - at < WATCH_LAG_LIMIT_SECONDS and is_older(
            watched.resource_version, after.resource_version, frozenset({before})
        ):
            return after
        del self.written[name]
        return watched

    def seen_hpa(self, watched: HpaState, now: float) -> HpaState:
        if self.hpa_written is None:
            return watched
        before, after, at = self.hpa_written
        current = watched.owned["metadata"]["resourceVersion"] if watched.owned else None
        written = after["metadata"]["resourceVersion"]
        if now - at < WATCH_LAG_LIMIT_SECONDS and (
            (current is None and before is None)
            or (current is not None and is_older(current, written, frozenset({before} if before else ())))
        ):
            return HpaState(after, watched.foreign)
        self.hpa_written = None
        return watched


@dataclass(frozen=True)
class PolicyObject:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any]
    created: str = ""

    @property
    def owner(self) -> OwnerRef:
        return OwnerRef(self.namespace, self.name, self.uid)

    @property
    def id(self) -> PolicyId:
        return PolicyId(self.created, self.namespace, self.name)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PolicyObject:
        meta = body["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 0),
            spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
            created=str(meta.get("creationTimestamp") or ""),
        )


@dataclass
class Observed:
    refs: dict[str, TargetRef] = field(default_factory=dict)
    states: dict[str, ReplicaState | None] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    # Targets an older policy also names: that policy sizes them, this one writes nothing to them.
    contested: dict[str, str] = field(default_factory=dict)
    hpa: HpaState | None = None

    def engine_current(self) -> dict[str, engine.ObservedTarget | None]:
        """What the engine sizes from: replicas, except for web, whose decision is the owned HPA's floor
        (the pods actually running still count against the connection budget)."""
        out = {
            name: (engine.ObservedTarget(s.replicas, ready=s.ready) if s is not None else None)
            for name, s in self.states.items()
        }
        web = self.states.get(engine.WEB)
        if web is not None and self.hpa is not None and self.hpa.owned is not None:
            floor = int(self.hpa.owned["spec"].get("minReplicas") or 1)
            out[engine.WEB] = engine.ObservedTarget(floor, running=web.replicas)
        return out


@dataclass
class CycleResult:
    decision: engine.PolicyDecision | None
    status: dict[str, Any]
    writes: int
    status_written: bool
    metrics: BatchResult | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class _Reporter:
    """Sets conditions on the status and tells, with an Event, when one turns bad or recovers."""

    status: model.ScalingPolicyStatus
    memory: PolicyMemory
    emit: EventSink

    def condition(
        self, type_: model.ConditionType, value: model.ConditionStatus, reason: str, message: str
    ) -> None:
        self.status.set_condition(type_, value, reason, message)
        before = self.memory.conditions.get(type_.value)
        now = (value.value, reason)
        self.memory.conditions[type_.value] = now
        if type_ is model.ConditionType.SCALING_LIMITED or before == now:
            return
        bad = value is (
            model.ConditionStatus.TRUE
            if type_ is model.ConditionType.CONFLICT
            else model.ConditionStatus.FALSE
        )
        # Told once when a condition turns bad, and once when it recovers; a good first state is quiet.
        if bad or before is not None:
            self.emit("Warning" if bad else "Normal", reason, f"{type_.value}={value.value}: {message}")


@dataclass
class _Cycle:
    """What one cycle of one policy works on, handed from stage to stage (observe, decide, act, report)."""

    spec: model.ScalingPolicySpec
    policy: PolicyObject
    memory: PolicyMemory
    status: model.ScalingPolicyStatus
    emit: EventSink
    observed: Observed = field(default_factory=Observed)
    batch: BatchResult = field(default_factory=lambda: BatchResult({}, 0, 0.0))
    decision: engine.PolicyDecision | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def reporter(self) -> _Reporter:
        return _Reporter(self.status, self.memory, self.emit)


def metric_queries(spec: model.ScalingPolicySpec) -> dict[str, str]:
    queries: dict[str, str] = {}
    if spec.web is not None and spec.web.request_rate is not None:
        queries[f"{engine.WEB}{_SEP}{engine.REQUEST_RATE}"] = spec.web.request_rate.query
    for worker in spec.workers or []:
        name = engine.worker_target(worker.queue)
        q = worker.queries()
        queries[f"{name}{_SEP}{engine.WAITING}"] = q.waiting
        queries[f"{name}{_SEP}{engine.IN_FLIGHT}"] = q.in_flight
        if worker.drain_seconds is not None:
            queries[f"{name}{_SEP}{engine.ARRIVAL_RATE}"] = q.arrival_rate
            queries[f"{name}{_SEP}{engine.COMPLETION_RATE}"] = q.completion_rate
    if spec.read_replicas is not None:
        queries[f"{engine.READ_REPLICAS}{_SEP}{engine.READ_LOAD}"] = spec.read_replicas.metric.query
    forecasts: list[tuple[str, model.Forecast | None, str]] = []
    if spec.web is not None and spec.web.request_rate is not None:
        forecasts.append((engine.WEB, spec.web.request_rate.forecast, spec.web.request_rate.query))
    for worker in spec.workers or []:
        forecasts.append((engine.worker_target(worker.queue), worker.forecast, worker.load_query()))
    if spec.read_replicas is not None:
        metric = spec.read_replicas.metric
        forecasts.append((engine.READ_REPLICAS, metric.forecast, metric.query))
    for target, forecast, query in forecasts:
        if forecast is not None:
            for name, promql in zip(engine.FORECAST_METRICS, forecast.queries(query), strict=True):
                queries[f"{target}{_SEP}{name}"] = promql
    return queries


def samples_for_engine(batch: BatchResult) -> dict[str, dict[str, tuple[float | None, float | None]]]:
    out: dict[str, dict[str, tuple[float | None, float | None]]] = {}
    for key, reading in batch.readings.items():
        target, _, metric = key.partition(_SEP)
        if isinstance(reading, Sample):
            out.setdefault(target, {})[metric] = (reading.value, reading.timestamp)
    return out


def target_refs(spec: model.ScalingPolicySpec, policy: PolicyObject) -> dict[str, TargetRef]:
    refs: dict[str, TargetRef] = {}
    if spec.web is not None:
        refs[engine.WEB] = TargetRef("apps/v1", "Deployment", spec.web.deployment, policy.namespace)
    for worker in spec.workers or []:
        refs[engine.worker_target(worker.queue)] = TargetRef(
            "apps/v1", "Deployment", worker.deployment_name(policy.name), policy.namespace
        )
    if spec.read_replicas is not None:
        rr = spec.read_replicas
        refs[engine.READ_REPLICAS] = TargetRef(
            rr.target.api_version, rr.target.kind, rr.target.name, policy.namespace, rr.replicas_path
        )
    return refs


def claim_keys(spec: model.ScalingPolicySpec, policy: PolicyObject) -> dict[str, str]:
    """Target name -> the key under which policies claim that workload (see engine.claims)."""
    return {
        name: target_key(ref.api_version, ref.kind, ref.namespace, ref.name)
        for name, ref in target_refs(spec, policy).items()
    }


def lookups_of(body: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The operator's index keys one policy's cycle reads: the keys it claims workloads under, and the
    keys of its targets and HPAs in the watched-objects indexes. An invalid spec reads none."""
    policy = PolicyObject.from_body(body)
    try:
        spec = model.parse_spec(policy.spec)
    except model.SpecError:
        return [], []
    refs = target_refs(spec, policy)
    claims = list(claim_keys(spec, policy).values())
    web = spec.web.deployment if spec.web is not None else None
    hpa = hpa_name(policy.name) if spec.web is not None else None
    return claims, watched_keys(policy.namespace, list(refs.values()), hpa, web)


def claims_of(body: Mapping[str, Any]) -> dict[str, PolicyId]:
    """What a ScalingPolicy claims, for the operator's index: target key -> the policy. An invalid spec
    claims nothing (it sizes nothing either)."""
    policy = PolicyObject.from_body(body)
    try:
        spec = model.parse_spec(policy.spec)
    except model.SpecError:
        return {}
    return {key: policy.id for key in claim_keys(spec, policy).values()}


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusPublisher:
    """Writes a policy's status when it changed, and keeps what was written so an idle policy writes
    nothing. A write the API server turns away for now (throttled, restarting) is retried next cycle."""

    def __init__(self, metrics: OperatorMetrics, clock: Callable[[], float], refresh_seconds: float) -> None:
        self._metrics = metrics
        self._clock = clock
        self._status_refresh = refresh_seconds

    def publish(
        self,
        policy: PolicyObject,
        status: model.ScalingPolicyStatus,
        memory: PolicyMemory,
        write_status: Callable[[dict[str, Any]], None],
    ) -> bool:
        body = status.to_patch()
        now = self._clock()
        written = (_fingerprint(body), _fingerprint(_signature(body)))
        if written == memory.last_status:
            return False
        # Metric values and reason texts move every cycle; they alone refresh the status at most once a
        # `status_refresh_seconds`, so an idle policy costs no API writes.
        if (
            memory.last_status is not None
            and written[1] == memory.last_status[1]
            and now - memory.last_status_write < self._status_refresh
        ):
            return False
        try:
            write_status(body)
        except ApiException as exc:
            if exc.status == 404:
                # Deleted while its cycle ran (the scheduler forgets it at the watch event): nothing
                # is left to report on, and nothing failed.
                self._metrics.write("status", "gone")
                log.info(
                    "policy deleted during its cycle", extra={"policy": f"{policy.namespace}/{policy.name}"}
                )
                return False
            if exc.status not in _TRANSIENT:
                self._metrics.write("status", "error")
                raise
            # Throttled (priority and fairness) or briefly unavailable: the same status goes out on the
            # next cycle, since nothing below records it as written. A line, not a traceback.
            self._metrics.write("status", "deferred")
            log.warning(
                "status write deferred to the next cycle (%s %s)",
                exc.status,
                exc.reason,
                extra={"policy": f"{policy.namespace}/{policy.name}"},
            )
            return False
        self._metrics.write("status", "ok")
        memory.last_status = written
        memory.last_status_write = now
        return True


class Reconciler:
    def __init__(
        self,
        replicas: ReplicaClient,
        hpas: HpaClient,
        workers: WorkerDeployments,
        prometheus: PrometheusReader,
        metrics: OperatorMetrics,
        *,
        clock: Callable[[], float] = time.time,
        status_refresh_seconds: float = 15.0,
        max_metric_age_seconds: float = engine.DEFAULT_MAX_METRIC_AGE_SECONDS,
        log_every_decision: bool = False,
    ) -> None:
        self._replicas = replicas
        self._hpas = hpas
        self._workers = workers
        self._prometheus = prometheus
        self._metrics = metrics
        self._clock = clock
        self._status = StatusPublisher(metrics, clock, status_refresh_seconds)
        self._max_age = max_metric_age_seconds
        self._log_every_decision = log_every_decision

    # ------------------------------------------------------------------ the cycle

    def run(
        self,
        policy: PolicyObject,
        memory: PolicyMemory,
        emit: EventSink,
        write_status: Callable[[dict[str, Any]], None],
        claimants: Mapping[str, Iterable[PolicyId]] | None = None,
        watched: Watched | None = None,
    ) -> CycleResult:
        """One cycle. `claimants`: target key -> every policy naming that workload (the operator's index);
        None when the caller knows of no other policy. `watched`: what the operator's watches saw of the
        policy's targets and HPAs; None to read everything from the API server."""
        started = time.perf_counter()
        status = _read_status(policy.status)
        status.observed_generation = policy.generation
        try:
            spec = _parse_spec(policy, memory)
        except model.SpecError as exc:
            return self._invalid_spec(policy, memory, status, exc, emit, write_status)
        status.set_condition(
            model.ConditionType.SPEC_VALID, model.ConditionStatus.TRUE, "Valid", "spec is valid"
        )
        if memory.persisted is None:
            _restore_memory(status, memory)

        c = _Cycle(spec, policy, memory, status, emit)
        c.observed = self._observe(spec, policy, memory, emit, claimants or {}, watched or Watched())
        c.batch = self._prometheus.read(metric_queries(spec))
        self._metrics.prometheus_query(
            c.batch.seconds, c.batch.requests, sum(isinstance(r, Missing) for r in c.batch.readings.values())
        )
        c.decision = engine.decide(
            spec,
            c.observed.engine_current(),
            samples_for_engine(c.batch),
            memory.histories,
            self._clock(),
            max_metric_age_seconds=self._max_age,
        )
        writes, failed = self._act(c, c.decision)
        # A write that did not happen must not count against the rate limits: keep the old history there.
        memory.histories = {
            name: (memory.histories.get(name, TargetHistory()) if name in failed else d.history)
            for name, d in c.decision.targets.items()
        }
        self._report(c, c.decision, failed)
        written = self._status.publish(policy, status, memory, write_status)
        self._metrics.reconciled(time.perf_counter() - started)
        return CycleResult(c.decision, status.to_patch(), writes, written, c.batch, c.errors)

    # ------------------------------------------------------------------ observe

    def _observe(
        self,
        spec: model.ScalingPolicySpec,
        policy: PolicyObject,
        memory: PolicyMemory,
        emit: EventSink,
        claimants: Mapping[str, Iterable[PolicyId]],
        watched: Watched,
    ) -> Observed:
        observed = Observed(refs=target_refs(spec, policy))
        for name, holder in contested(policy.id, claim_keys(spec, policy), claimants).items():
            observed.contested[name] = (
                f"{observed.refs[name].describe()} is also named by ScalingPolicy {holder.describe()}, "
                "created earlier, which sizes it; this policy writes nothing to it"
            )
        enforce = spec.mode is model.Mode.ENFORCE
        for worker in spec.workers or []:
            if engine.worker_target(worker.queue) in observed.contested:
                continue
            if worker.template is not None and enforce:
                try:
                    done = self._workers.ensure(
                        worker, policy.owner, max(worker.min_replicas, 1 if worker.min_replicas else 0)
                    )
                except ApiException as exc:
                    observed.missing[engine.worker_target(worker.queue)] = (
                        f"cannot create its Deployment: {exc.reason}"
                    )
                    continue
                if done == "created":
                    made = worker.deployment_name(policy.name)
                    emit("Normal", "Created", f"Created worker Deployment {made} for queue {worker.queue}")
                    self._metrics.write("Deployment", "created")
        for name, ref in observed.refs.items():
            if name in observed.missing or name in observed.contested:
                observed.states[name] = None
                continue
            seen = watched.replica_state(ref)
            if seen is not None:
                observed.states[name] = memory.seen_replicas(name, seen, time.monotonic())
                continue
            try:
                observed.states[name] = self._replicas.read(ref)
            except TargetNotFound as exc:
                observed.states[name] = None
                observed.missing[name] = f"{ref.describe()} not found ({exc})"
        if spec.web is not None and observed.states.get(engine.WEB) is not None:
            if watched.hpas_watched:
                state = HpaClient.state_from(watched.hpas, policy.owner, spec.web.deployment)
                observed.hpa = memory.seen_hpa(state, time.monotonic())
            else:
                observed.hpa = self._hpas.observe(policy.owner, spec.web.deployment)
        return observed

    # ------------------------------------------------------------------ act

    def _act(self, c: _Cycle, decision: engine.PolicyDecision) -> tuple[int, set[str]]:
        """Write what changed; returns the number of writes and the targets whose write failed."""
        if c.spec.mode is not model.Mode.ENFORCE:
            return 0, set()
        writes = 0
        failed: set[str] = set()
        for name, d in decision.targets.items():
            if not d.exists:
                continue
            if name == engine.WEB:
                done = self._act_web(c, decision, d)
                if done < 0:
                    failed.add(name)
                writes += max(done, 0)
                continue
            state = c.observed.states.get(name)
            if state is None or d.desired == state.replicas:
                continue
            ref = c.observed.refs[name]
            try:
                after = self._replicas.write_unless_resized(ref, d.desired, state)
            except WriteConflict as exc:
                # Someone else resized it since we read it: decide again on fresh data next cycle.
                self._metrics.write(ref.kind, "conflict")
                c.errors.append(f"{name}: {exc}; will decide again")
                failed.add(name)
                continue
            except (ApiException, TargetNotFound) as exc:
                self._metrics.write(ref.kind, "error")
                c.errors.append(f"{name}: writing replicas of {ref.describe()} failed: {exc}")
                failed.add(name)
                continue
            c.memory.written[name] = (state.resource_version, after, time.monotonic())
            writes += 1
            self._metrics.write(ref.kind, "scaled")
            c.memory.last_scale_time[name] = datetime.now(UTC).replace(microsecond=0)
        return writes, failed

    def _act_web(self, c: _Cycle, decision: engine.PolicyDecision, d: TargetDecision) -> int:
        """Create or update the owned HPA with the decided floor: 1 written, 0 nothing to do, -1 failed."""
        spec, observed = c.spec, c.observed
        assert spec.web is not None
        if observed.hpa is None or observed.hpa.foreign is not None:
            return 0
        desired = desired_hpa(spec.web, c.policy.owner, d.desired)
        if decision.web_max_by_budget is not None:
            desired["spec"]["maxReplicas"] = max(
                desired["spec"]["minReplicas"], min(spec.web.max_replicas, decision.web_max_by_budget)
            )
        try:
            done, after = self._hpas.apply(observed.hpa, desired)
        except ApiException as exc:
            outcome = "conflict" if exc.status == 409 else "error"
            self._metrics.write("HorizontalPodAutoscaler", outcome)
            c.errors.append(f"web: writing HPA {hpa_name(c.policy.name)} failed ({exc.status} {exc.reason})")
            return -1
        if after is not None:
            before = observed.hpa.owned["metadata"]["resourceVersion"] if observed.hpa.owned else None
            c.memory.hpa_written = (before, after, time.monotonic())
        if done in ("created", "updated"):
            self._metrics.write("HorizontalPodAutoscaler", done)
            current_min = (observed.hpa.owned or {}).get("spec", {}).get("minReplicas")
            if current_min != desired["spec"]["minReplicas"]:
                c.memory.last_scale_time[engine.WEB] = datetime.now(UTC).replace(microsecond=0)
            return 1
        return 0

    # ------------------------------------------------------------------ report

    def _report(self, c: _Cycle, decision: engine.PolicyDecision, failed: set[str]) -> None:
        spec, policy, observed, status, memory = c.spec, c.policy, c.observed, c.status, c.memory
        dry = spec.mode is model.Mode.DRY_RUN
        targets: list[model.TargetStatus] = []
        summary_workers: list[str] = []
        for name, d in decision.targets.items():
            ref = observed.refs[name]
            limited = LimitedBy.CONFLICT if name in observed.contested else d.limited_by
            current = d.current
            if name == engine.WEB and (state := observed.states.get(name)) is not None:
                # For web the decision is the HPA's floor; the status shows the Deployment's own size.
                current = state.replicas
            reason = (
                d.reason if d.exists else observed.contested.get(name) or observed.missing.get(name, d.reason)
            )
            if dry and d.changes:
                reason = f"DryRun: would scale {d.current} -> {d.desired}: {reason}"
            targets.append(
                model.TargetStatus(
                    name=name,
                    kind=ref.kind,
                    target_ref=ref.name,
                    current_replicas=current,
                    desired_replicas=d.desired,
                    limited_by=limited,
                    reason=reason,
                    metrics={k: round(v, 4) for k, v in d.metrics.items()},
                    last_scale_time=memory.last_scale_time.get(name),
                    history=self._history_to_persist(name, memory),
                )
            )
            cell = f"{current}/{d.desired}"
            if name == engine.WEB:
                status.web = cell
            elif name == engine.READ_REPLICAS:
                status.read_replicas = cell
            else:
                summary_workers.append(f"{name.removeprefix('worker/')} {cell}")
            if name not in failed:
                # A write that failed is told by the errors (condition and Warning), not as "Scaled".
                self._announce(name, d, memory, c.emit, dry)
            self._metrics.decision(policy.namespace, policy.name, name, d.limited_by.value, d.desired)
            logged = (d.current, d.desired, d.limited_by.value)
            level = logging.INFO
            if memory.logged.get(name) == logged and not self._log_every_decision:
                level = logging.DEBUG
            memory.logged[name] = logged
            log.log(
                level,
                "decision",
                extra={
                    "policy": f"{policy.namespace}/{policy.name}",
                    "target": name,
                    "current": d.current,
                    "desired": d.desired,
                    "raw": d.raw,
                    "limited_by": d.limited_by.value,
                    "reason": reason,
                    "metrics": dict(d.metrics),
                    "mode": spec.mode.value,
                },
            )
        status.targets = targets
        status.workers = ", ".join(summary_workers) or None
        self._conditions(c, decision)

    @staticmethod
    def _history_to_persist(name: str, memory: PolicyMemory) -> dict[str, Any] | None:
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

    def _announce(
        self, name: str, d: TargetDecision, memory: PolicyMemory, emit: EventSink, dry: bool
    ) -> None:
        key = (d.limited_by.value, d.desired)
        if d.changes:
            verb = "WouldScale" if dry else "Scaled"
            prefix = "DryRun: would scale" if dry else "Scaled"
            what = "web floor (HPA minReplicas)" if name == engine.WEB else name
            emit("Normal", verb, f"{prefix} {what} {d.current} -> {d.desired}: {d.reason}")
        elif d.limited_by is LimitedBy.MISSING_METRIC and memory.announced.get(name) != key:
            emit("Warning", "Holding", f"Holding {name} at {d.current}: {d.reason}")
        elif (
            d.limited_by is not LimitedBy.NONE
            and memory.announced.get(name) != key
            and d.limited_by
            in (LimitedBy.MAX, LimitedBy.CONNECTION_BUDGET, LimitedBy.ACTIVATION, LimitedBy.COOLDOWN)
            # An idle queue resting at zero is the normal state, not news: activation is told only
            # while some tasks wait below the threshold.
            and not (d.limited_by is LimitedBy.ACTIVATION and not d.metrics.get("load"))
        ):
            emit("Normal", "Holding", f"Holding {name} at {d.current}: {d.reason}")
        memory.announced[name] = key

    def _conditions(self, c: _Cycle, decision: engine.PolicyDecision) -> None:
        spec, observed, batch = c.spec, c.observed, c.batch
        T, F = model.ConditionStatus.TRUE, model.ConditionStatus.FALSE
        C = model.ConditionType
        # A forecast without data (less history than a season) is told in the target's reason; it
        # blocks nothing, so it does not make the metrics unavailable.
        missing = {
            k: r
            for k, r in batch.readings.items()
            if isinstance(r, Missing) and k.partition(_SEP)[2] not in engine.FORECAST_METRICS
        }
        invalid = [
            f"{name}: {d.reason}"
            for name, d in decision.targets.items()
            if d.limited_by is LimitedBy.MISSING_METRIC
        ]
        if missing or invalid:
            parts = [f"{k.replace(_SEP, ' ')}: {r.reason} (query: {r.query})" for k, r in missing.items()]
            parts += [p for p in invalid if not any(p.startswith(k.split(_SEP)[0]) for k in missing)]
            c.reporter.condition(C.METRICS_AVAILABLE, F, "MetricsUnavailable", "; ".join(parts))
        else:
            c.reporter.condition(
                C.METRICS_AVAILABLE,
                T,
                "MetricsRead",
                f"{len(batch.readings)} metrics read",
            )

        conflict = observed.hpa.foreign if observed.hpa is not None else None
        if observed.contested:
            c.reporter.condition(
                C.CONFLICT,
                T,
                "TargetSizedByOlderPolicy",
                "; ".join(f"{name}: {why}" for name, why in observed.contested.items()),
            )
        elif conflict is not None and spec.web is not None:
            c.reporter.condition(
                C.CONFLICT,
                T,
                "ForeignHPA",
                f"HorizontalPodAutoscaler {conflict} (not owned by this policy) already targets Deployment "
                f"{spec.web.deployment}; scalekeeper writes nothing for the web tier",
            )
        else:
            c.reporter.condition(
                C.CONFLICT,
                F,
                "NoConflict",
                "no other autoscaler targets these workloads",
            )

        limited = [
            f"{name}: {d.limited_by.value}"
            for name, d in decision.targets.items()
            if d.limited_by
            in (
                LimitedBy.MAX,
                LimitedBy.MIN,
                LimitedBy.FLOOR,
                LimitedBy.SCALE_UP_POLICY,
                LimitedBy.SCALE_DOWN_POLICY,
                LimitedBy.CONNECTION_BUDGET,
                LimitedBy.STABILIZATION,
            )
        ]
        if limited:
            c.reporter.condition(C.SCALING_LIMITED, T, "Limited", "; ".join(limited))
        else:
            c.reporter.condition(
                C.SCALING_LIMITED,
                F,
                "Unlimited",
                "every target is at its recommendation",
            )

        problems = [f"{name}: {why}" for name, why in observed.missing.items()] + c.errors
        if conflict is not None:
            problems.append(f"web: conflicting HPA {conflict}")
        problems += [f"{name}: sized by another policy" for name in observed.contested]
        if problems:
            reason = "Degraded"
            if observed.missing:
                reason = "TargetsUnavailable"
            elif observed.contested or conflict is not None:
                reason = "Conflict"
            c.reporter.condition(C.READY, F, reason, "; ".join(problems))
        else:
            mode = (
                "DryRun: decisions recorded, nothing written"
                if spec.mode is model.Mode.DRY_RUN
                else "sizing every target"
            )
            c.reporter.condition(C.READY, T, "Reconciled", mode)

    def _invalid_spec(
        self,
        policy: PolicyObject,
        memory: PolicyMemory,
        status: model.ScalingPolicyStatus,
        exc: model.SpecError,
        emit: EventSink,
        write_status: Callable[[dict[str, Any]], None],
    ) -> CycleResult:
        message = "; ".join(exc.messages)
        F = model.ConditionStatus.FALSE
        reporter = _Reporter(status, memory, emit)
        reporter.condition(model.ConditionType.SPEC_VALID, F, "InvalidSpec", message)
        reporter.condition(model.ConditionType.READY, F, "InvalidSpec", f"nothing is scaled: {message}")
        if memory.announced.get("__spec__") != ("invalid", 0):
            emit("Warning", "InvalidSpec", message)
            memory.announced["__spec__"] = ("invalid", 0)
        written = self._status.publish(policy, status, memory, write_status)
        return CycleResult(None, status.to_patch(), 0, written, errors=exc.messages)


def _restore_memory(status: model.ScalingPolicyStatus, memory: PolicyMemory) -> None:
    """After a (re)start or a failover, carry on from what the previous process wrote: its histories (a
    scale step taken just before a crash still counts against the rate policies), and what it had told
    (a hold or a bad condition already in the status is not announced again with an Event)."""
    memory.persisted = {}
    for cond in status.conditions:
        memory.conditions[cond.type.value] = (cond.status.value, cond.reason)
    for t in status.targets:
        if t.desired_replicas is not None:
            memory.announced[t.name] = (t.limited_by.value, t.desired_replicas)
    for t in status.targets:
        if t.history is None:
            continue
        try:
            memory.histories[t.name] = TargetHistory.from_dict(t.history)
        except ValueError as exc:
            log.warning("ignoring unreadable history of %s: %s", t.name, exc)
            continue
        memory.persisted[t.name] = t.history


def _read_status(raw: dict[str, Any] | None) -> model.ScalingPolicyStatus:
    """The status as found, or a fresh one when it is absent or unreadable (written by another version)."""
    if raw:
        try:
            return model.ScalingPolicyStatus.model_validate(raw)
        except Exception:
            log.debug("starting from an empty status: the one found does not parse")
    return model.ScalingPolicyStatus()


def _parse_spec(policy: PolicyObject, memory: PolicyMemory) -> model.ScalingPolicySpec:
    """The spec is immutable within a generation, so it is parsed once per generation."""
    if memory.spec is not None and memory.spec[0] == policy.generation and policy.generation:
        return memory.spec[1]
    spec = model.parse_spec(policy.spec)
    memory.spec = (policy.generation, spec)
    return spec


def _fingerprint(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _signature(body: dict[str, Any]) -> Any:
    """The status without what changes every cycle (metric values, reason texts, condition messages)."""
    targets = [
        {k: v for k, v in t.items() if k not in ("metrics", "reason")} for t in body.get("targets", [])
    ]
    conditions = [{k: v for k, v in c.items() if k != "message"} for c in body.get("conditions", [])]
    return (
        targets,
        conditions,
        body.get("web"),
        body.get("workers"),
        body.get("readReplicas"),
        body.get("observedGeneration"),
    )
