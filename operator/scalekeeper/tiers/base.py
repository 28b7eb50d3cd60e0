"""What a tier is: one workload of a policy, sized by its own rules, behind one small interface.

A tier module (web.py, workers.py, read_replicas.py) owns everything particular to its kind of workload:
the object it sizes, the PromQL it needs, how samples become a proposal (calling the pure engine), how it
is observed and how the decision is written. The cycle (cycle.py) only loops over tiers: observe, decide,
act, report. Adding a signal is one module like these plus a line in `tiers/__init__.py`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum
from typing import ClassVar, Literal, Protocol

from kubernetes.client.rest import ApiException

from .. import model
from ..engine.bottleneck import Growth
from ..engine.forecast import FORECAST_METRICS, ForecastInput, raise_to_forecast
from ..engine.sizing import Reading, SampleInput, read_metric
from ..engine.types import ObservedTarget, PolicyDecision, Proposal, TargetDecision, TargetHistory, TargetPlan
from ..kube.dryrun import DryRunCall, Verdict
from ..kube.hpa import HpaClient
from ..kube.owners import OwnerRef
from ..kube.pods import PodCosts, WorkerPod
from ..kube.targets import ReplicaClient, ReplicaState, TargetNotFound, TargetRef, WriteConflict
from ..kube.watched import Watched, replica_key, watches_kind
from ..kube.workers import WorkerDeployments
from ..memory import OwnWrite, PolicyMemory
from ..metrics.promql import forecast_windows
from ..opmetrics import OperatorMetrics

# Which connection pool a tier's pods open connections from (see engine/budget.py).
Pool = Literal["web", "worker"]
# The status field that summarizes a tier ("3/4"; workers: "video 3/4, reports 0/0").
Summary = Literal["web", "workers", "readReplicas"]


class EventSink(Protocol):
    def __call__(self, type_: str, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class Conflict:
    """Another autoscaler on the workload: told in the Conflict condition; nothing is written to it."""

    reason: str
    message: str
    problem: str


@dataclass(frozen=True)
class Observation:
    """What observe found of one tier's workload. `state` None: not read (see `missing`, `contested`)."""

    state: ReplicaState | None = None
    # Why the workload cannot be sized (not found, cannot be created): Ready=False, TargetsUnavailable.
    missing: str | None = None
    # An older policy names the same workload and sizes it: this one writes nothing to it.
    contested: str | None = None
    # ... by another target of this same policy, not by an older policy.
    contested_within: bool = False
    conflict: Conflict | None = None
    # The workload's pods as the pod watch sees them, for a tier that writes to its pods (None: not read).
    pods: tuple[WorkerPod, ...] | None = None

    def engine_view(self) -> ObservedTarget | None:
        """What the engine sizes from; None when the workload is absent."""
        if self.state is None:
            return None
        return ObservedTarget(self.state.replicas, ready=self.state.ready)

    def shown_current(self, decided: TargetDecision) -> int:
        """The current size the status shows."""
        return decided.current


@dataclass(frozen=True)
class ObserveContext:
    """What observing reads from: the watches first, the API server for what they have not seen."""

    watched: Watched
    replicas: ReplicaClient
    hpas: HpaClient
    memory: PolicyMemory
    monotonic: float
    enforce: bool


@dataclass
class ActContext:
    """What acting writes with, and where it tells what happened."""

    replicas: ReplicaClient
    hpas: HpaClient
    workers: WorkerDeployments
    memory: PolicyMemory
    metrics: OperatorMetrics
    emit: EventSink
    decision: PolicyDecision
    monotonic: float
    wall: float
    pod_costs: PodCosts
    # One query's values by a label, now (metrics/prometheus.py PrometheusReader.by_label).
    by_label: Callable[[str, str], dict[str, float]]
    errors: list[str] = field(default_factory=list)
    # Workloads found unusable while acting (a worker Deployment that cannot be created), by target name.
    unavailable: dict[str, str] = field(default_factory=dict)

    def scaled(self, name: str) -> None:
        self.memory.last_scale_time[name] = datetime.fromtimestamp(self.wall, UTC).replace(microsecond=0)


class Outcome(Enum):
    UNCHANGED = "unchanged"
    WRITTEN = "written"
    FAILED = "failed"
    # Not written this cycle on purpose (workers: waiting for the pods' deletion costs to be seen).
    DEFERRED = "deferred"


class Tier(ABC):
    """One workload of a policy. `name` is its name in the status, Events and metrics."""

    name: str
    summary: ClassVar[Summary]
    pool: ClassVar[Pool | None] = None

    def __init__(self, owner: OwnerRef) -> None:
        self.owner = owner

    @abstractmethod
    def target(self) -> TargetRef:
        """The object whose replicas this tier sizes."""

    @abstractmethod
    def absent(self) -> str:
        """How a decision names the workload when it is not found."""

    @abstractmethod
    def queries(self) -> dict[str, str]:
        """PromQL per metric name; the cycle reads them all in one batch with the other tiers'."""

    @abstractmethod
    def plan(
        self,
        observed: ObservedTarget,
        samples: Mapping[str, SampleInput],
        history: TargetHistory,
        now: float,
        max_age: float | None,
    ) -> TargetPlan | TargetDecision:
        """Pure: the proposal from this cycle's samples, as a plan for the engine's rules, or a decision
        when there is nothing to size."""

    def watched_keys(self) -> list[str]:
        """The keys of the operator's watch indexes this tier's observe reads."""
        ref = self.target()
        return [replica_key(ref.kind, ref.namespace, ref.name)] if watches_kind(ref) else []

    def observe(self, ctx: ObserveContext) -> Observation:
        """Reads only: the workload's replicas from the watches, or from the API server."""
        ref = self.target()
        seen = ctx.watched.replica_state(ref)
        if seen is not None:
            mine = ctx.memory.believed((self.name, "replicas"), seen.resource_version, ctx.monotonic)
            return Observation(mine if isinstance(mine, ReplicaState) else seen)
        try:
            return Observation(ctx.replicas.read(ref))
        except TargetNotFound as exc:
            return Observation(missing=f"{ref.describe()} not found ({exc})")

    def act(self, ctx: ActContext, decided: TargetDecision, observed: Observation) -> Outcome:
        """Write the decision: the replicas, at the version observed, unless another writer resized."""
        state = observed.state
        if not decided.exists or state is None or decided.desired == state.replicas:
            return Outcome.UNCHANGED
        try:
            written = self.write_replicas(ctx, decided.desired, state)
        except WriteConflict as exc:
            # Someone else resized it since we read it: decide again on fresh data next cycle.
            ctx.errors.append(f"{self.name}: {exc}; will decide again")
            return Outcome.FAILED
        if not written:
            return Outcome.FAILED
        ctx.scaled(self.name)
        return Outcome.WRITTEN

    def write_replicas(self, ctx: ActContext, replicas: int, state: ReplicaState) -> bool:
        """Set the workload's replicas at the version observed and remember the write as this operator's;
        False (told in the errors) when the API server refused it. WriteConflict, counted, is raised: each
        caller knows what another writer's resize means to it."""
        ref = self.target()
        try:
            after = ctx.replicas.write_unless_resized(ref, replicas, state)
        except WriteConflict:
            ctx.metrics.write(ref.kind, "conflict")
            raise
        except (ApiException, TargetNotFound) as exc:
            ctx.metrics.write(ref.kind, "error")
            ctx.errors.append(f"{self.name}: writing replicas of {ref.describe()} failed: {exc}")
            return False
        write = OwnWrite(state.resource_version, after, after.resource_version, ctx.monotonic)
        ctx.memory.wrote((self.name, "replicas"), write)
        ctx.metrics.write(ref.kind, "scaled")
        return True

    def verify(self, call: DryRunCall) -> list[Verdict]:
        """The API server's dry-run verdicts on the objects this tier creates or patches (none: it only
        writes replicas)."""
        return []

    def protects_busy_pods(self) -> bool:
        """Whether a scale-down first sets its pods' deletion costs (the BusyWorkersProtected condition)."""
        return False

    def growth(self) -> Growth | None:
        """The load whose growth at maxReplicas makes this tier a bottleneck before it needs more than max
        (None: only needing more than max does)."""
        return None

    def subject(self) -> str:
        """What a Scaled Event says was scaled."""
        return self.name

    def cell_label(self) -> str | None:
        """The label before this tier's cell in its summary field (None: the cell alone)."""
        return None


def forecast_queries(query: str, forecast: model.Forecast | None) -> dict[str, str]:
    """The forecast's three queries of a target's metric (none when the target has no forecast)."""
    if forecast is None:
        return {}
    windows = forecast_windows(query, forecast.lead_seconds, forecast.season_seconds)
    return dict(zip(FORECAST_METRICS, windows, strict=True))


def raise_by_forecast(
    name: str,
    proposal: Proposal,
    forecast: model.Forecast | None,
    samples: Mapping[str, SampleInput],
    per_replica: float,
    now: float,
    max_age: float | None,
) -> Proposal:
    """The proposal raised to what the forecast's readings need, when the target has a forecast."""
    if forecast is None:
        return proposal
    readings = (
        reading(samples, m, f"{m.replace('_', ' ')} for {name}", now, max_age) for m in FORECAST_METRICS
    )
    return raise_to_forecast(proposal, ForecastInput(*readings), per_replica)


def reading(
    samples: Mapping[str, SampleInput], metric: str, label: str, now: float, max_age: float | None
) -> Reading:
    """A metric of this cycle's samples, validated (present, finite, fresh)."""
    return read_metric(label, samples.get(metric), now, max_age)
