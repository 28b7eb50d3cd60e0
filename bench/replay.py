"""What only the benchmarks use of the simulator: a trace replayed, every rule side by side on the same
drawn tasks, kept whole (the trace, each task and its wait, the oracle's schedule) for the quality tables
and plots (bench/quality.py) and for replaying the very same tasks through the demo (bench/quality_real.py).
`scalekeeper simulate` itself (operator/scalekeeper/simulate/) streams the trace and keeps only figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scalekeeper import model
from scalekeeper.simulate import (
    OracleRun,
    RuleResult,
    ServiceTime,
    Trace,
    Workload,
    make_workload,
    oracle_run,
    run_rules,
    select_worker,
    standard_rules,
)


@dataclass(frozen=True)
class Simulation:
    trace: Trace
    results: tuple[RuleResult, ...]
    horizon: float
    target_wait: float
    workload: Workload
    oracle: OracleRun | None = None


def simulate(
    spec: model.ScalingPolicySpec,
    queue: str | None,
    trace: Trace,
    service: ServiceTime,
    *,
    seed: int = 1,
    start_delay: float = 20.0,
    target_wait: float = 30.0,
    tail_seconds: float = 1800.0,
    initial_replicas: int | None = None,
    oracle_interval: float | None = None,
    variants: Sequence[tuple[str, model.WorkerSpec]] = (),
    peer: model.WorkerSpec | None = None,
) -> Simulation:
    """Replay the trace under every rule; with `oracle_interval`, the oracle (`oracle_run`) too.
    `variants`: more scalekeeper rules, each the policy with the worker replaced (name, worker); `peer`:
    the worker the hpa-default and keda-style rules size (`standard_rules`)."""
    worker = select_worker(spec, queue)
    workload = make_workload(trace, service, seed)
    horizon = trace.end + tail_seconds
    initial = worker.min_replicas if initial_replicas is None else initial_replicas
    rules = standard_rules(spec, worker, variants, peer)
    results = run_rules(rules, workload, worker, start_delay, horizon, target_wait, initial)
    if oracle_interval is None:
        return Simulation(trace, results, horizon, target_wait, workload)
    oracle = oracle_run(
        workload, worker, start_delay, horizon, target_wait, oracle_interval, initial_replicas=initial
    )
    return Simulation(trace, (*results, oracle.result), horizon, target_wait, workload, oracle)
