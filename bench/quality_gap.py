"""Where scalekeeper's replica-hours above the oracle's go, on bench.quality's trace (no cluster).

    PYTHONPATH=operator .venv/bin/python -m bench.quality_gap [bench.quality's options]

Two splits of the gap, on the same arrivals and service times as `make bench-quality`:

by phase   every pod second of a rule (pod creation to the end of its warm shutdown, as replica-hours
           counts it) falls in one phase of the business day it belongs to, from the trace's own load
           (calls per 5 min, smoothed over 7 intervals): `rise` from opening until the smoothed load
           first reaches 75% of that day's smoothed peak, `plateau` until it last is at 75% or more,
           `fall` until closing, `closed` the nights, weekends and the tail after the last day. The
           table gives each rule's replica-hours per phase and the excess over the oracle's.
by cause   counterfactual runs of one rule with one mechanism taken away at a time (the difference in
           replica-hours is what that mechanism costs here, and the minutes over target what it buys):
           the scale-down stabilization window and rate limit, the cooldown to zero, the tolerance band,
           the pod start delay (pods ready at once: not a setting, a bound), all hysteresis at once; then
           a sweep of the sizing target itself (tasksPerWorker, drainSeconds) and of the scale-down
           stabilization window. `reversals` counts scale events undoing the previous one within 60 s.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from bench import quality as Q
from bench import traces as T
from bench.common import reproduce_command
from scalekeeper import model
from scalekeeper.simulate import (
    RuleResult,
    ServiceTime,
    Workload,
    engine_decider,
    load_policy,
    make_workload,
    oracle_run,
    run_rule,
    select_worker,
)

PHASES = ("rise", "plateau", "fall", "closed")
PLATEAU_SHARE = 0.75  # of the day's smoothed peak
SMOOTHING_INTERVALS = 7  # centred moving average over 35 min of real time


@dataclass(frozen=True)
class Segment:
    start: float  # simulated seconds
    end: float
    phase: str


def phase_segments(calls: Sequence[T.CallCount], factor: float, horizon: float) -> list[Segment]:
    """The simulated time line cut into phases (see the module docstring), covering [0, horizon)."""
    origin = calls[0].start
    length = T.TRACE_INTERVAL_SECONDS / factor

    def at(i: int, day: list[T.CallCount]) -> float:
        return (day[i].start - origin).total_seconds() / factor

    by_day: dict[date, list[T.CallCount]] = {}
    for c in calls:
        by_day.setdefault(c.start.date(), []).append(c)
    out: list[Segment] = []
    cursor = 0.0
    for day in by_day.values():
        half = SMOOTHING_INTERVALS // 2
        smooth = [
            sum(c.calls for c in day[max(0, i - half) : i + half + 1])
            / len(day[max(0, i - half) : i + half + 1])
            for i in range(len(day))
        ]
        peak = max(smooth)
        high = [i for i, v in enumerate(smooth) if v >= PLATEAU_SHARE * peak]
        opening, closing = at(0, day), at(len(day) - 1, day) + length
        first, last = at(high[0], day), at(high[-1], day) + length
        if opening > cursor:
            out.append(Segment(cursor, opening, "closed"))
        out += [
            Segment(opening, first, "rise"),
            Segment(first, last, "plateau"),
            Segment(last, closing, "fall"),
        ]
        cursor = closing
    out.append(Segment(cursor, horizon, "closed"))
    return [s for s in out if s.end > s.start]


def hours_by_phase(result: RuleResult, segments: Sequence[Segment]) -> dict[str, float]:
    seconds = dict.fromkeys(PHASES, 0.0)
    for created, ended in result.pods:
        for s in segments:
            overlap = min(ended, s.end) - max(created, s.start)
            if overlap > 0:
                seconds[s.phase] += overlap
    return {phase: v / 3600.0 for phase, v in seconds.items()}


# A counterfactual: the worker changed, and the pod start delay used.
Change = Callable[[model.WorkerSpec], model.WorkerSpec]


def scale_down(window: int, policy: model.HPAScalingPolicy) -> Change:
    def change(w: model.WorkerSpec) -> model.WorkerSpec:
        down = model.ScaleDownRules(stabilization_window_seconds=window, policies=[policy])
        return w.model_copy(update={"behavior": w.behavior.model_copy(update={"scale_down": down})})

    return change


ONE_POD = model.HPAScalingPolicy(type=model.PolicyType.PODS, value=1, period_seconds=15)
ALL_PODS = model.HPAScalingPolicy(type=model.PolicyType.PERCENT, value=100, period_seconds=15)


def no_scale_down_window(w: model.WorkerSpec) -> model.WorkerSpec:
    return scale_down(0, ALL_PODS)(w)


def no_cooldown(w: model.WorkerSpec) -> model.WorkerSpec:
    return w.model_copy(update={"cooldown_seconds": 0})


def no_tolerance(w: model.WorkerSpec) -> model.WorkerSpec:
    return w.model_copy(update={"behavior": w.behavior.model_copy(update={"tolerance": 0.0})})


def no_hysteresis(w: model.WorkerSpec) -> model.WorkerSpec:
    return no_tolerance(no_cooldown(no_scale_down_window(w)))


def sizing(tasks_per_worker: int | None, drain_seconds: int | None) -> Change:
    def change(w: model.WorkerSpec) -> model.WorkerSpec:
        return w.model_copy(update={"tasks_per_worker": tasks_per_worker, "drain_seconds": drain_seconds})

    return change


@dataclass(frozen=True)
class Row:
    name: str
    metrics: Q.RuleMetrics
    by_phase: dict[str, float]


def main(argv: Sequence[str] | None = None) -> int:
    began = time.monotonic()
    parser = Q.build_parser()
    parser.description = __doc__.split("\n")[0]
    args = parser.parse_args(argv)
    spec, _ = load_policy(args.policy)
    worker = select_worker(spec, args.queue)
    calls = T.select_days(T.load_bank_calls(), args.first_day, args.days)
    scale = T.tasks_per_call(calls, args.compress, worker, args.service_seconds, args.peak_load)
    trace = T.compress(calls, args.compress, scale)
    workload: Workload = make_workload(
        trace, ServiceTime(args.service_seconds, args.service_distribution), args.seed
    )
    horizon = trace.end + args.tail
    segments = phase_segments(calls, args.compress, horizon)
    initial = worker.min_replicas
    wait_tpw = max(1, round(args.target_wait / 2 * worker.concurrency / args.service_seconds))
    wait_worker = sizing(wait_tpw, None)(worker)

    def run(name: str, w: model.WorkerSpec, start_delay: float = args.start_delay, hpa: bool = False) -> Row:
        interval = 15.0 if hpa else float(spec.interval_seconds)
        rule = w.model_copy(update={"behavior": model.Behavior()}) if hpa else w
        result = run_rule(
            name,
            engine_decider(spec, rule),
            interval,
            workload,
            worker,
            start_delay,
            horizon,
            args.target_wait,
            initial,
        )
        metrics = Q.rule_metrics(result, workload, worker.concurrency, args.target_wait)
        return Row(name, metrics, hours_by_phase(result, segments))

    oracle = oracle_run(
        workload,
        worker,
        args.start_delay,
        horizon,
        args.target_wait,
        args.oracle_interval,
        initial_replicas=initial,
    ).result
    oracle_row = Row(
        "oracle",
        Q.rule_metrics(oracle, workload, worker.concurrency, args.target_wait),
        hours_by_phase(oracle, segments),
    )
    hpa_row = run("hpa-default", worker, hpa=True)

    rows = [oracle_row, hpa_row]
    bases = (("demo", worker), (f"tasksPerWorker {wait_tpw}", wait_worker))
    for label, base in bases:
        rows += [
            run(f"{label} as written", base),
            run(f"{label}, no scale-down window/limit", no_scale_down_window(base)),
            run(f"{label}, no cooldown to zero", no_cooldown(base)),
            run(f"{label}, tolerance 0", no_tolerance(base)),
            run(f"{label}, no hysteresis (all three)", no_hysteresis(base)),
            run(f"{label}, pods ready at once (bound)", base, start_delay=0.0),
            run(f"{label}, no hysteresis + pods at once (bound)", no_hysteresis(base), start_delay=0.0),
        ]
    for tpw in (4, 8, 15, 20, 30):
        rows.append(run(f"sizing: tasksPerWorker {tpw}", sizing(tpw, None)(worker)))
    for drain in (15, 30):
        rows.append(run(f"sizing: drainSeconds {drain}", sizing(None, drain)(worker)))
        both = sizing(wait_tpw, drain)(worker)
        rows.append(run(f"sizing: tasksPerWorker {wait_tpw} + drainSeconds {drain}", both))
    for window in (0, 15, 30, 60, 120, 300):
        changed = scale_down(window, ONE_POD)(wait_worker)
        rows.append(run(f"tasksPerWorker {wait_tpw}, scale-down window {window} s, 1 pod/15 s", changed))

    days = T.business_days(calls)
    span = {p: sum(s.end - s.start for s in segments if s.phase == p) / 60.0 for p in PHASES}
    print(
        f"trace: {len(days)} business days {days[0]} .. {days[-1]}, --peak-load {args.peak_load:g}; "
        "phase lengths (simulated minutes): " + ", ".join(f"{p} {span[p]:.0f}" for p in PHASES)
    )
    print(f"worker: queue {worker.queue} of {args.policy.name}; oracle interval {args.oracle_interval:g} s")
    print()
    ref = oracle_row.by_phase
    total_ref = oracle_row.metrics.replica_hours
    print(
        "| rule | minutes over | replica-hours (vs oracle) | scale events | reversals | "
        + " | ".join(f"{p} (excess)" for p in PHASES)
        + " |"
    )
    print("| --- | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in PHASES) + " |")
    for r in rows:
        m = r.metrics
        cells = " | ".join(f"{r.by_phase[p]:.2f} ({r.by_phase[p] - ref[p]:+.2f})" for p in PHASES)
        hours = f"{m.replica_hours:.2f} ({m.replica_hours / total_ref:.0%})"
        print(
            f"| {r.name} | {m.minutes_over_target} | {hours} | {m.scale_events} | {m.reversals} | {cells} |"
        )
    print()
    print(f"reproduce: {reproduce_command('bench.quality_gap', args)}")
    print(f"wall time: {time.monotonic() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
