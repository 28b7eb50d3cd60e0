"""A run: rules deciding on the queue model over time, each on its own model of the same tasks.

The rules go in step through simulated time (one schedule of everyone's decision instants), so a
stream of tasks is read once for all of them and only the tasks between the slowest rule and the
fastest are held.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .. import model
from .queue import QueueModel, StreamFeed
from .results import RuleResult, RuleSummary, WaitStats, rule_result
from .rules import HPA_SYNC_SECONDS, KEDA_POLL_SECONDS, Decider, engine_decider, keda_decider
from .workload import Workload

Rule = tuple[str, Decider, float]  # name, decider, seconds between decisions
Progress = Callable[[float], None]  # told the simulated time now and then


def standard_rules(
    spec: model.ScalingPolicySpec,
    worker: model.WorkerSpec,
    variants: Sequence[tuple[str, model.WorkerSpec]] = (),
    peer: model.WorkerSpec | None = None,
) -> list[Rule]:
    """scalekeeper (the policy as written), hpa-default and keda-style, then `variants`: more
    scalekeeper rules, each the policy with the worker replaced (name, worker). `peer`: the worker the
    HPA and KEDA rules size (default `worker`), for a comparison whose peers are set apart from it."""
    peer = worker if peer is None else peer
    default_worker = peer.model_copy(update={"behavior": model.Behavior()})
    return [
        ("scalekeeper", engine_decider(spec, worker), float(spec.interval_seconds)),
        ("hpa-default", engine_decider(spec, default_worker), HPA_SYNC_SECONDS),
        ("keda-style", keda_decider(peer), KEDA_POLL_SECONDS),
        *((name, engine_decider(spec, w), float(spec.interval_seconds)) for name, w in variants),
    ]


def run_rules(
    rules: Sequence[Rule],
    workload: Workload,
    worker: model.WorkerSpec,
    start_delay: float,
    horizon: float,
    target_wait: float,
    initial_replicas: int,
) -> tuple[RuleResult, ...]:
    """Every rule over a Workload, every task's wait kept."""
    models = [_model(workload, worker, start_delay, initial_replicas) for _ in rules]
    runs = _drive(rules, models, horizon, initial_replicas)
    return tuple(
        rule_result(name, q, horizon, target_wait, run.replicas, run.scale_events)
        for (name, _, _), q, run in zip(rules, models, runs, strict=True)
    )


def run_rule(
    name: str,
    decider: Decider,
    interval: float,
    workload: Workload,
    worker: model.WorkerSpec,
    start_delay: float,
    horizon: float,
    target_wait: float,
    initial_replicas: int,
) -> RuleResult:
    rules = [(name, decider, interval)]
    return run_rules(rules, workload, worker, start_delay, horizon, target_wait, initial_replicas)[0]


def stream_rules(
    rules: Sequence[Rule],
    tasks: Iterable[tuple[float, float]],
    worker: model.WorkerSpec,
    start_delay: float,
    horizon: float,
    target_wait: float,
    initial_replicas: int,
    progress: Progress | None = None,
) -> tuple[RuleSummary, ...]:
    """Every rule over a stream of (arrival, service) tasks, in arrival order: only the figures kept."""
    feed = StreamFeed(tasks)
    stats = [WaitStats(target_wait) for _ in rules]
    models = [_model(feed, worker, start_delay, initial_replicas, s) for s in stats]
    runs = _drive(rules, models, horizon, initial_replicas, feed, progress)
    summaries = []
    for (name, _, _), q, run, s in zip(rules, models, runs, stats, strict=True):
        s.finish(horizon, (arrival for arrival, _ in q.pending.values()))
        summaries.append(s.summary(name, q.replica_seconds(horizon), run.replicas, run.scale_events))
    return tuple(summaries)


def _model(
    tasks: Workload | StreamFeed,
    worker: model.WorkerSpec,
    start_delay: float,
    initial_replicas: int,
    stats: WaitStats | None = None,
) -> QueueModel:
    return QueueModel(
        tasks, worker.concurrency, worker.prefetch_multiplier, start_delay, initial_replicas, stats
    )


@dataclass
class _Run:
    decider: Decider
    interval: float
    ticks: int  # decisions at 0, interval, ... ticks * interval
    replicas: list[tuple[float, int]]  # (time, desired replicas) after every change
    scale_events: int = 0


def _drive(
    rules: Sequence[Rule],
    models: Sequence[QueueModel],
    horizon: float,
    initial_replicas: int,
    feed: StreamFeed | None = None,
    progress: Progress | None = None,
) -> list[_Run]:
    """Each rule decides every `interval` from 0 through the horizon on its model (all in time order),
    then every model runs on to the horizon."""
    runs = [
        _Run(decider, interval, int(horizon // interval), [(0.0, initial_replicas)])
        for _, decider, interval in rules
    ]
    due = [(0.0, i, 0) for i in range(len(rules))]  # (time, rule, decision number)
    steps = 0
    while due:
        now, i, k = heapq.heappop(due)
        q, run = models[i], runs[i]
        q.advance(now)
        current = q.replicas
        desired = run.decider(now, current, q.observe(now))
        if desired != current:
            q.scale_to(desired, now)
            run.scale_events += 1
            run.replicas.append((now, desired))
        if k < run.ticks:
            # k * interval, not a running sum: the same instants as a rule run alone.
            heapq.heappush(due, ((k + 1) * run.interval, i, k + 1))
        steps += 1
        if not steps & 0xFF:
            if feed is not None:
                feed.release(min(m.next_task for m in models))
            if progress is not None:
                progress(now)
    for q in models:
        q.advance(horizon)
    return runs


def select_worker(spec: model.ScalingPolicySpec, queue: str | None) -> model.WorkerSpec:
    """The worker of `queue`; without one, the first of the policy's workers."""
    workers = spec.workers or []
    if not workers:
        raise ValueError("the policy has no workers to simulate")
    if queue is None:
        return workers[0]
    for w in workers:
        if w.queue == queue:
            return w
    names = ", ".join(w.queue for w in workers)
    raise ValueError(f"--queue {queue}: no worker for that queue in the policy (its queues: {names})")
