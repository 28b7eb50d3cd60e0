"""A run: rules deciding on the queue model over time, each on the same tasks."""

from __future__ import annotations

from collections.abc import Sequence

from .. import model
from .queue import QueueModel
from .rules import HPA_SYNC_SECONDS, KEDA_POLL_SECONDS, Decider, engine_decider, keda_decider
from .waits import RuleResult, rule_result
from .workload import Workload

Rule = tuple[str, Decider, float]  # name, decider, seconds between decisions


def standard_rules(
    spec: model.ScalingPolicySpec,
    worker: model.WorkerSpec,
    variants: Sequence[tuple[str, model.WorkerSpec]] = (),
) -> list[Rule]:
    """scalekeeper (the policy as written), hpa-default and keda-style, then `variants`: more
    scalekeeper rules, each the policy with the worker replaced (name, worker)."""
    default_worker = worker.model_copy(update={"behavior": model.Behavior()})
    return [
        ("scalekeeper", engine_decider(spec, worker), float(spec.interval_seconds)),
        ("hpa-default", engine_decider(spec, default_worker), HPA_SYNC_SECONDS),
        ("keda-style", keda_decider(worker), KEDA_POLL_SECONDS),
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
    return tuple(
        run_rule(
            name, decider, interval, workload, worker, start_delay, horizon, target_wait, initial_replicas
        )
        for name, decider, interval in rules
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
    q = QueueModel(workload, worker.concurrency, worker.prefetch_multiplier, start_delay, initial_replicas)
    replicas: list[tuple[float, int]] = [(0.0, initial_replicas)]
    scale_events = 0
    next_arrival = 0
    ticks = int(horizon // interval)
    for k in range(ticks + 1):
        now = k * interval
        next_arrival = q.advance(now, next_arrival)
        current = q.replicas
        desired = decider(now, current, q.observe(now, next_arrival))
        if desired != current:
            q.scale_to(desired, now)
            scale_events += 1
            replicas.append((now, desired))
    q.advance(horizon, next_arrival)
    return rule_result(name, q, horizon, target_wait, replicas, scale_events)


def select_worker(spec: model.ScalingPolicySpec, queue: str | None) -> model.WorkerSpec:
    workers = spec.workers or []
    if not workers:
        raise ValueError("the policy has no workers to simulate")
    if queue is None:
        if len(workers) > 1:
            names = ", ".join(w.queue for w in workers)
            raise ValueError(f"the policy has several queues ({names}); pick one with --queue")
        return workers[0]
    for w in workers:
        if w.queue == queue:
            return w
    raise ValueError(f"no worker for queue {queue!r} in the policy")
