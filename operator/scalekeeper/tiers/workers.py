"""The worker tier: one Celery queue's worker Deployment, sized from the tasks waiting and in flight.

The queue's metrics come from Prometheus (the spec's queries or the defaults, `<app>` and `<queue>` filled
in); the sizing is the engine's (`size_worker`). A worker given as a pod template gets a Deployment the
operator makes and owns; its replicas are then written through /scale like any other target's.

Busy-worker protection (`protectBusyWorkers`): before lowering the replicas, each pod's deletion cost is set
to the tasks it executes (read through Prometheus, so the operator never holds broker credentials), and the
replicas are lowered on a later cycle, once the pod watch shows every cost: the ReplicaSet then removes idle
pods first. Without per-pod data, or when a pod refuses the patch, the scale-down goes ahead unprotected, told
by a Warning Event and the BusyWorkersProtected condition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import ClassVar

from kubernetes.client.rest import ApiException

from .. import model
from ..engine.bottleneck import Growth
from ..engine.sizing import SampleInput, WorkerParams, size_worker
from ..engine.types import ObservedTarget, TargetDecision, TargetHistory, TargetPlan
from ..kube.dryrun import DryRunCall, Verdict, refusal, verdict
from ..kube.owners import OwnerRef
from ..kube.pods import WorkerPod, pods_key
from ..kube.targets import TargetRef
from ..kube.workers import desired_worker_deployment
from ..memory import DeletionCosts
from ..metrics.presets import PRESETS
from ..metrics.prometheus import MetricsUnreadable
from ..metrics.promql import DEFAULT_RATE_WINDOW_SECONDS, backlog, fill_template, range_seconds
from .base import (
    ActContext,
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

WAITING = "waiting"
IN_FLIGHT = "in_flight"
ARRIVAL_RATE = "arrival_rate"
COMPLETION_RATE = "completion_rate"
# How long the pod watch may take to show the deletion costs written before a scale-down goes ahead anyway.
PROTECTION_WAIT_SECONDS = 10.0
SERVICE_SECONDS = "service_seconds"
SERVICE_SCV = "service_scv"
# The decision's backlog metric (engine/sizing.py): waiting + in flight.
BACKLOG = "load"


def worker_target(queue: str) -> str:
    return f"worker/{queue}"


@dataclass(frozen=True)
class WorkerQueries:
    """The PromQL of one queue: the overrides, else the preset's; app and queue names filled in, or not yet.
    None for an input the preset gives none of and the policy wrote none of (the model allows that only
    where nothing reads it)."""

    waiting: str
    in_flight: str
    arrival_rate: str | None
    completion_rate: str
    service_seconds: str | None
    service_scv: str | None
    executing_per_pod: str | None


def worker_templates(worker: model.WorkerSpec) -> WorkerQueries:
    """The queue's query templates, `<app>` and `<queue>` not filled in yet: each override, else the
    preset's."""
    m = worker.metrics or model.WorkerMetrics()
    preset = PRESETS[m.preset]
    return WorkerQueries(
        waiting=m.waiting or preset.waiting,
        in_flight=m.in_flight or preset.in_flight,
        arrival_rate=m.arrival_rate or preset.arrival_rate,
        completion_rate=m.completion_rate or preset.completion_rate,
        service_seconds=m.service_seconds or preset.service_seconds,
        service_scv=m.service_scv or preset.service_scv,
        executing_per_pod=m.executing_per_pod or preset.executing_per_pod,
    )


def worker_queries(worker: model.WorkerSpec, policy: str) -> WorkerQueries:
    """The queue's queries, `<app>` filled with `metrics.app`, else with the policy's name (a policy sizes one
    application), and `<queue>` with the queue's."""
    app = policy if worker.metrics is None or worker.metrics.app is None else worker.metrics.app
    t = worker_templates(worker)

    def fill(template: str | None) -> str | None:
        return None if template is None else fill_template(template, app=app, queue=worker.queue)

    return WorkerQueries(
        waiting=fill_template(t.waiting, app=app, queue=worker.queue),
        in_flight=fill_template(t.in_flight, app=app, queue=worker.queue),
        arrival_rate=fill(t.arrival_rate),
        completion_rate=fill_template(t.completion_rate, app=app, queue=worker.queue),
        service_seconds=fill(t.service_seconds),
        service_scv=fill(t.service_scv),
        executing_per_pod=fill(t.executing_per_pod),
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
        # The completion rate is averaged over its query's longest range, read from the template: a name
        # filled in could hold text that looks like one.
        rate_window_seconds=range_seconds(worker_templates(worker).completion_rate)
        or DEFAULT_RATE_WINDOW_SECONDS,
        target_wait_seconds=None if worker.target_wait_seconds is None else float(worker.target_wait_seconds),
        max_replicas=worker.max_replicas,
    )


class WorkerTier(Tier):
    summary: ClassVar[Summary] = "workers"
    pool: ClassVar[Pool | None] = "worker"

    def __init__(self, owner: OwnerRef, spec: model.WorkerSpec) -> None:
        super().__init__(owner)
        self.spec = spec
        self.name = worker_target(spec.queue)
        self.behavior = behavior_of(spec.behavior)
        resolved = worker_queries(spec, owner.name)
        # Only what is read is kept: the preset's other queries are about 2 KB a queue of every policy served.
        self._queries = self._read(resolved)
        self.executing_per_pod = resolved.executing_per_pod
        self.params = worker_params(spec)

    def target(self) -> TargetRef:
        return TargetRef(
            "apps/v1", "Deployment", self.spec.deployment_name(self.owner.name), self.owner.namespace
        )

    def absent(self) -> str:
        return f"worker Deployment for queue {self.spec.queue}"

    def queries(self) -> dict[str, str]:
        return dict(self._queries)

    def _read(self, q: WorkerQueries) -> dict[str, str]:
        queries = {WAITING: q.waiting, IN_FLIGHT: q.in_flight}
        read: dict[str, str | None] = {}
        if self.spec.drain_seconds is not None:
            read.update({ARRIVAL_RATE: q.arrival_rate, COMPLETION_RATE: q.completion_rate})
        if self.spec.target_wait_seconds is not None:
            read.update(
                {ARRIVAL_RATE: q.arrival_rate, SERVICE_SECONDS: q.service_seconds, SERVICE_SCV: q.service_scv}
            )
        queries.update({key: query for key, query in read.items() if query is not None})
        return {**queries, **forecast_queries(backlog(q.waiting, q.in_flight), self.spec.forecast)}

    def plan(
        self,
        observed: ObservedTarget,
        samples: Mapping[str, SampleInput],
        history: TargetHistory,
        now: float,
        max_age: float | None,
    ) -> TargetPlan | TargetDecision:
        q = self.spec.queue
        sizing = size_worker(
            self.params,
            observed.replicas,
            self.behavior.tolerance,
            now,
            waiting=reading(samples, WAITING, f"metric waiting for queue {q}", now, max_age),
            in_flight=reading(samples, IN_FLIGHT, f"metric in_flight for queue {q}", now, max_age),
            arrival_rate=reading(samples, ARRIVAL_RATE, f"metric arrival_rate for queue {q}", now, max_age),
            completion_rate=reading(
                samples, COMPLETION_RATE, f"metric completion_rate for queue {q}", now, max_age
            ),
            idle_since=history.idle_since,
            ready=observed.ready,
            backlog_since=history.backlog_since,
            service_seconds=reading(samples, SERVICE_SECONDS, f"task runtime for queue {q}", now, max_age),
            service_scv=reading(samples, SERVICE_SCV, f"task runtime scv for queue {q}", now, max_age),
        )
        history = replace(history, idle_since=sizing.idle_since, backlog_since=sizing.backlog_since)
        proposal = raise_by_forecast(
            self.name,
            sizing.proposal,
            self.spec.forecast,
            samples,
            self.params.effective_tasks_per_worker,
            now,
            max_age,
        )
        return TargetPlan(
            self.behavior,
            self.spec.min_replicas,
            self.spec.max_replicas,
            observed.replicas,
            proposal,
            history,
        )

    def protects_busy_pods(self) -> bool:
        return self.spec.protect_busy_workers

    def growth(self) -> Growth:
        return Growth(BACKLOG, "backlog", "BacklogGrowingAtMax", self.spec.max_replicas)

    def watched_keys(self) -> list[str]:
        keys = super().watched_keys()
        if self.spec.protect_busy_workers:
            keys.append(self._pods_key())
        return keys

    def _pods_key(self) -> str:
        return pods_key(self.owner.namespace, self.spec.deployment_name(self.owner.name))

    def observe(self, ctx: ObserveContext) -> Observation:
        seen = super().observe(ctx)
        if seen.state is None and self.spec.template is not None and ctx.enforce:
            # Made by act, from the template: absent until then is expected, not a fault.
            return Observation()
        if self.spec.protect_busy_workers:
            pods = ctx.watched.pods_of(self._pods_key())
            return replace(seen, pods=None if pods is None else tuple(pods))
        return seen

    def act(self, ctx: ActContext, decided: TargetDecision, observed: Observation) -> Outcome:
        """A templated worker's Deployment first (created, or its template brought in line), then the
        replicas as any target's."""
        if self.spec.template is not None:
            try:
                done = ctx.workers.ensure(self.spec, self.owner, self.spec.min_replicas)
            except ApiException as exc:
                ctx.unavailable[self.name] = f"cannot create its Deployment: {refusal(exc)}"
                return Outcome.FAILED
            if done == "created":
                made = self.spec.deployment_name(self.owner.name)
                ctx.emit("Normal", "Created", f"Created worker Deployment {made} for queue {self.spec.queue}")
                ctx.metrics.write("Deployment", "created")
        state = observed.state
        lowering = decided.exists and state is not None and decided.desired < state.replicas
        if not lowering:
            ctx.memory.protections.pop(self.name, None)
        elif self.spec.protect_busy_workers and not self._protected(ctx, observed.pods):
            return Outcome.DEFERRED
        return super().act(ctx, decided, observed)

    def _protected(self, ctx: ActContext, pods: tuple[WorkerPod, ...] | None) -> bool:
        """Whether the scale-down may go ahead now: the deletion costs are in place and seen, or cannot be
        (told as unprotected). False: costs were written this cycle, or are not seen yet."""
        written = ctx.memory.protections.get(self.name)
        if written is not None:
            seen = {p.name: p.cost for p in pods or ()}
            if pods is not None and all(seen.get(n, str(c)) == str(c) for n, c in written.costs.items()):
                del ctx.memory.protections[self.name]
                ctx.memory.unprotected.pop(self.name, None)
                return True
            if ctx.monotonic - written.since < PROTECTION_WAIT_SECONDS:
                return False
            del ctx.memory.protections[self.name]
            return self._unprotected(
                ctx, f"the pod watch did not show the deletion costs within {PROTECTION_WAIT_SECONDS:g}s"
            )
        if pods is None:
            return self._unprotected(ctx, "the pod watch has not listed the pods yet")
        costs = self._costs(ctx, pods)
        if isinstance(costs, str):
            return self._unprotected(ctx, costs)
        current = {p.name: p.cost for p in pods}
        # An absent annotation is cost 0 already.
        changed = {
            n: c for n, c in costs.items() if current[n] != str(c) and not (c == 0 and current[n] is None)
        }
        for pod, cost in changed.items():
            try:
                ctx.pod_costs.write(self.owner.namespace, pod, cost)
            except ApiException as exc:
                if exc.status == 404:  # gone since the watch saw it: nothing to protect
                    continue
                return self._unprotected(ctx, f"pod {pod} refused its deletion cost: {refusal(exc)}")
        if not changed:
            ctx.memory.unprotected.pop(self.name, None)
            return True
        ctx.memory.protections[self.name] = DeletionCosts(changed, ctx.monotonic)
        busy = ", ".join(f"{n}={c}" for n, c in sorted(costs.items()) if c > 0) or "none busy"
        ctx.emit(
            "Normal",
            "ProtectingBusyWorkers",
            f"Set pod-deletion-cost on {len(changed)} pods of Deployment "
            f"{self.spec.deployment_name(self.owner.name)} from their executing tasks ({busy}); lowering "
            "its replicas once the pod watch shows them",
        )
        return False

    def _costs(self, ctx: ActContext, pods: tuple[WorkerPod, ...]) -> dict[str, int] | str:
        """Each pod's deletion cost, its executing tasks; or why they cannot be known. A pod not ready has
        none to read, and is removed first anyway."""
        query = self.executing_per_pod
        if query is None:
            preset = (self.spec.metrics or model.WorkerMetrics()).preset
            return f"preset {preset} gives no tasks executing per pod: set metrics.executingPerPod"
        try:
            executing = ctx.by_label(query, "pod")
        except MetricsUnreadable as exc:
            return f"tasks executing per pod unreadable: {exc}"
        unknown = sorted(p.name for p in pods if p.ready and p.name not in executing)
        if unknown:
            return f"no executing count for pods {', '.join(unknown)} (query: {query})"
        return {p.name: max(0, round(executing.get(p.name, 0.0))) for p in pods}

    def _unprotected(self, ctx: ActContext, why: str) -> bool:
        ctx.memory.unprotected[self.name] = why
        ctx.emit(
            "Warning",
            "ScaleDownUnprotected",
            f"Lowering Deployment {self.spec.deployment_name(self.owner.name)} without busy-worker "
            f"protection: {why}",
        )
        return True

    def verify(self, call: DryRunCall) -> list[Verdict]:
        if self.spec.template is None:
            return []
        made = desired_worker_deployment(self.spec, self.owner, self.spec.min_replicas)
        return [verdict(call, made, "deployments")]

    def cell_label(self) -> str:
        return self.spec.queue
