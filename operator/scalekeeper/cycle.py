"""One cycle of one ScalingPolicy: observe (reads only), decide (pure), act (writes only), report.

Every tier goes through the same stages (see tiers/): the cycle never looks at which tier it holds.
Observation and action go through the adapters in `kube/` and `metrics/`; what carries over between
cycles lives in the `PolicyMemory` the caller keeps per policy; both clocks are injected.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import model
from .decision import DEFAULT_MAX_METRIC_AGE_SECONDS, decide_tiers
from .engine.claims import PolicyId, contested
from .engine.sizing import SampleInput
from .engine.types import PolicyDecision, TargetHistory
from .kube.dryrun import DryRunCall
from .kube.hpa import HpaClient
from .kube.pods import PodCosts
from .kube.targets import ReplicaClient
from .kube.watched import Watched
from .kube.workers import WorkerDeployments
from .memory import PolicyMemory, read_status, restore_memory
from .metrics.prometheus import BatchResult, MetricKey, Missing, PrometheusReader, Sample
from .metrics.saturation import resource_queries
from .opmetrics import OperatorMetrics
from .policy import PolicyObject, parsed
from .publish import StatusPublisher
from .report import Cycle, Reporter
from .tiers.base import ActContext, EventSink, Observation, ObserveContext, Outcome, Tier


@dataclass
class CycleResult:
    decision: PolicyDecision | None
    status: dict[str, Any]
    writes: int
    status_written: bool
    metrics: BatchResult[MetricKey] | None = None
    errors: list[str] = field(default_factory=list)


def samples_of(batch: BatchResult[MetricKey]) -> dict[str, dict[str, SampleInput]]:
    """The batch's values per target and metric, as the engine takes them: (value, sample time)."""
    out: dict[str, dict[str, SampleInput]] = {}
    for key, reading in batch.readings.items():
        if isinstance(reading, Sample):
            out.setdefault(key.target, {})[key.metric] = (reading.value, reading.timestamp)
    return out


class Reconciler:
    def __init__(
        self,
        replicas: ReplicaClient,
        hpas: HpaClient,
        workers: WorkerDeployments,
        pod_costs: PodCosts,
        prometheus: PrometheusReader,
        metrics: OperatorMetrics,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        status_refresh_seconds: float = 15.0,
        max_metric_age_seconds: float = DEFAULT_MAX_METRIC_AGE_SECONDS,
        log_every_decision: bool = False,
        dry_run: DryRunCall | None = None,
    ) -> None:
        self._replicas = replicas
        self._hpas = hpas
        self._workers = workers
        self._prometheus = prometheus
        self._metrics = metrics
        self._clock = clock
        self._monotonic = monotonic
        self._status = StatusPublisher(metrics, clock, status_refresh_seconds)
        self._reporter = Reporter(metrics, log_every_decision)
        self._max_age = max_metric_age_seconds
        self._dry_run = dry_run
        self._pod_costs = pod_costs

    def run(
        self,
        policy: PolicyObject,
        memory: PolicyMemory,
        emit: EventSink,
        write_status: Callable[[dict[str, Any]], None],
        claimants: Mapping[str, Iterable[PolicyId]] | None = None,
        watched: Watched | None = None,
        may_write: Callable[[], bool] = lambda: True,
    ) -> CycleResult:
        """One cycle. `claimants`: target key -> every policy naming that workload (the operator's index);
        None when the caller knows of no other policy. `watched`: what the operator's watches saw of the
        policy's targets and HPAs; None to read everything from the API server. `may_write` is asked
        before each write: once it says no (this replica no longer serves the policy), the cycle writes
        nothing more, not even its status."""
        started = self._monotonic()
        status = read_status(policy.status)
        status.observed_generation = policy.generation
        try:
            found = parsed(policy, memory)
        except model.SpecError as exc:
            self._reporter.invalid_spec(status, memory, emit, exc, self._clock())
            written = self._publish(policy, status, memory, write_status, may_write)
            return CycleResult(None, status.to_patch(), 0, written, errors=exc.messages)
        if memory.persisted is None:
            restore_memory(status, memory)

        c = Cycle(found.spec, policy, memory, status, emit, found.tiers, now=self._clock())
        c.claims, c.twice = found.claims, found.twice
        c.refused = self._verify(c)
        c.observed = self._observe(c, claimants or {}, watched or Watched())
        c.batch = self._prometheus.read(queries_to_read(found.queries, found.tiers, c.observed))
        missing = sum(isinstance(r, Missing) for r in c.batch.readings.values())
        self._metrics.prometheus_query(c.batch.seconds, c.batch.requests, missing)
        c.decision = decide_tiers(
            c.spec,
            c.tiers,
            {name: seen.engine_view() for name, seen in c.observed.items()},
            samples_of(c.batch),
            memory.histories,
            c.now,
            max_metric_age_seconds=self._max_age,
        )
        writes = self._act(c, may_write) if c.spec.mode is model.Mode.ENFORCE else 0
        # A write that did not happen must not count against the rate limits: keep the old history there.
        memory.histories = {
            name: (memory.histories.get(name, TargetHistory()) if name in c.failed else d.history)
            for name, d in c.decision.targets.items()
        }
        self._reporter.report(c)
        written = self._publish(policy, status, memory, write_status, may_write)
        self._metrics.reconciled(self._monotonic() - started)
        return CycleResult(c.decision, status.to_patch(), writes, written, c.batch, c.errors)

    def _publish(
        self,
        policy: PolicyObject,
        status: model.ScalingPolicyStatus,
        memory: PolicyMemory,
        write_status: Callable[[dict[str, Any]], None],
        may_write: Callable[[], bool],
    ) -> bool:
        if not self._fence(may_write):
            return False
        return self._status.publish(policy, status, memory, write_status)

    def _fence(self, may_write: Callable[[], bool]) -> bool:
        """Whether this replica may still write for the policy; counted when it may not."""
        if may_write():
            return True
        self._metrics.handovers.labels("fenced").inc()
        return False

    def _verify(self, c: Cycle) -> dict[str, str]:
        """Once per spec generation (recorded in the status, so not again after a restart or a failover):
        a server-side dry-run of every object the tiers create or patch. Returns the refused targets."""
        done = c.status.verification
        if done is not None and done.generation == c.policy.generation:
            return dict(done.refused)
        if self._dry_run is None:
            return {}
        refused: dict[str, str] = {}
        unverified: list[str] = []
        for tier in c.tiers:
            for verdict in tier.verify(self._dry_run):
                if verdict.refused is not None:
                    refused[tier.name] = verdict.refused
                if verdict.unverified is not None:
                    unverified.append(verdict.unverified)
        c.status.verification = model.Verification(
            generation=c.policy.generation, refused=refused, unverified=unverified
        )
        return refused

    def _observe(
        self, c: Cycle, claimants: Mapping[str, Iterable[PolicyId]], watched: Watched
    ) -> dict[str, Observation]:
        """Reads only: each tier's workload, except those an older policy sizes."""
        holders = contested(c.policy.id, c.claims, claimants)
        twice = c.twice
        ctx = ObserveContext(
            watched,
            self._replicas,
            self._hpas,
            c.memory,
            self._monotonic(),
            c.spec.mode is model.Mode.ENFORCE,
        )
        observed: dict[str, Observation] = {}
        for tier in c.tiers:
            holder = holders.get(tier.name)
            if tier.name in c.refused:
                # What it would write is refused: it holds, the others go on.
                observed[tier.name] = Observation(missing=c.refused[tier.name])
                continue
            if tier.name in twice:
                observed[tier.name] = Observation(
                    contested=f"{tier.target().describe()} is also this policy's {twice[tier.name]}: "
                    "only that target sizes it",
                    contested_within=True,
                )
                continue
            if holder is None:
                observed[tier.name] = tier.observe(ctx)
                continue
            observed[tier.name] = Observation(
                contested=f"{tier.target().describe()} is also named by ScalingPolicy {holder.describe()}, "
                "created earlier, which sizes it; this policy writes nothing to it"
            )
        return observed

    def _act(self, c: Cycle, may_write: Callable[[], bool]) -> int:
        """Writes only: each tier writes its decision; returns how many targets were written."""
        assert c.decision is not None
        ctx = ActContext(
            self._replicas,
            self._hpas,
            self._workers,
            c.memory,
            self._metrics,
            c.emit,
            c.decision,
            self._monotonic(),
            self._clock(),
            self._pod_costs,
            self._prometheus.by_label,
        )
        writes = 0
        for tier in c.tiers:
            seen = c.observed[tier.name]
            if seen.contested is not None or tier.name in c.refused:
                continue
            if not self._fence(may_write):
                c.failed.update(t.name for t in c.tiers)
                break
            outcome = tier.act(ctx, c.decision.targets[tier.name], seen)
            if outcome in (Outcome.FAILED, Outcome.DEFERRED):
                c.failed.add(tier.name)
            writes += outcome is Outcome.WRITTEN
        c.errors, c.unavailable = ctx.errors, ctx.unavailable
        return writes


def queries_to_read(
    queries: Mapping[MetricKey, str], tiers: Sequence[Tier], observed: Mapping[str, Observation]
) -> dict[MetricKey, str]:
    """The cycle's queries: its tiers' own, and the CPU and memory of each target that has pods. Those
    two only feed the Bottleneck condition, and a target without pods would answer nothing; they are a
    cycle's heaviest (the kubelet's cAdvisor series matched by pod-name pattern: 20-30 times as slow as a
    sizing series, and the bound on a 3,000-policy fleet; README "At scale") and its longest texts, so they
    are built here when read rather than kept with the parsed spec of every policy served (7 KB a policy
    of the bench's, tracemalloc)."""
    read = dict(queries)
    for tier in tiers:
        seen = observed.get(tier.name)
        state = seen.state if seen is not None else None
        if state is not None and (state.replicas > 0 or bool(state.ready)):
            ref = tier.target()
            read.update(
                {
                    MetricKey(tier.name, m): q
                    for m, q in resource_queries(ref.kind, ref.namespace, ref.name).items()
                }
            )
    return read
