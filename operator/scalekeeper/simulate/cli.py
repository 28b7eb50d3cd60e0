"""`scalekeeper simulate`: the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from .. import model
from .report import format_table, plot
from .run import run_rules, select_worker, standard_rules
from .workload import DISTRIBUTIONS, ServiceTime, make_workload, parse_trace


def load_policy(path: Path) -> tuple[model.ScalingPolicySpec, dict[str, Any]]:
    """The spec (from a ScalingPolicy manifest or a bare spec) and its `simulation` block.

    The simulation block may sit at the top level of the file or, to keep the manifest
    applicable, as YAML in the annotation scalekeeper.dev/simulation.
    """
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping")
    sim: Any = doc.get("simulation") or {}
    annotations = (doc.get("metadata") or {}).get("annotations") or {}
    if not sim and f"{model.GROUP}/simulation" in annotations:
        sim = yaml.safe_load(annotations[f"{model.GROUP}/simulation"]) or {}
    if not isinstance(sim, dict):
        raise ValueError(f"{path}: simulation must be a mapping")
    spec = model.parse_spec(
        doc["spec"] if "spec" in doc else {k: v for k, v in doc.items() if k != "simulation"}
    )
    return spec, sim


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scalekeeper simulate",
        description="Replay an arrival trace through the engine and a Celery queue model, and compare "
        "scalekeeper's rules with the HPA defaults and a KEDA-style rule.",
    )
    p.add_argument("--policy", required=True, type=Path, help="ScalingPolicy manifest or spec (YAML)")
    p.add_argument(
        "--trace", required=True, type=Path, help="CSV of t_seconds,arrivals (or one column with --step)"
    )
    p.add_argument("--plot", type=Path, help="write a PNG of load, replicas and waits here")
    p.add_argument("--queue", help="the worker queue to simulate (needed when the policy has several)")
    p.add_argument("--step", type=float, help="interval length in seconds for a one-column trace")
    p.add_argument("--service-seconds", type=float, help="mean task service time (default: policy, else 1)")
    p.add_argument("--service-distribution", choices=DISTRIBUTIONS, help="default: policy, else exponential")
    p.add_argument("--start-delay", type=float, help="seconds from scale-up to a ready pod (default 20)")
    p.add_argument(
        "--target-wait", type=float, default=30.0, help="waiting-time target in seconds (default 30)"
    )
    p.add_argument(
        "--tail", type=float, default=1800.0, help="seconds simulated after the trace ends (default 1800)"
    )
    p.add_argument("--initial-replicas", type=int, help="replicas at t=0 (default: the worker's minReplicas)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        spec, sim_block = load_policy(args.policy)
        trace = parse_trace(args.trace.read_text(), args.step)
        mean = args.service_seconds or float(sim_block.get("serviceSeconds", 1.0))
        dist = args.service_distribution or str(sim_block.get("serviceDistribution", "exponential"))
        if dist not in DISTRIBUTIONS:
            raise ValueError(f"serviceDistribution must be one of {', '.join(DISTRIBUTIONS)}")
        if not mean > 0:
            raise ValueError("service time must be > 0")
        start_delay = args.start_delay
        if start_delay is None:
            start_delay = float(sim_block.get("startDelaySeconds", 20.0))
        worker = select_worker(spec, args.queue)
        workload = make_workload(trace, ServiceTime(mean, dist), args.seed)
        horizon = trace.end + args.tail
        initial = worker.min_replicas if args.initial_replicas is None else args.initial_replicas
        results = run_rules(
            standard_rules(spec, worker), workload, worker, start_delay, horizon, args.target_wait, initial
        )
    except (OSError, ValueError, model.SpecError, yaml.YAMLError) as exc:
        print(f"scalekeeper simulate: {exc}", file=sys.stderr)
        return 2
    print(
        f"queue {worker.queue}: {len(workload.arrivals)} tasks over "
        f"{trace.end / 60:g} min (+{args.tail / 60:g} min tail), service {dist} mean {mean:g}s, "
        f"concurrency {worker.concurrency} x prefetch {worker.prefetch_multiplier}, "
        f"start delay {start_delay:g}s, seed {args.seed}"
    )
    print(format_table(results, args.target_wait))
    if args.plot is not None:
        plot(trace, results, horizon, args.target_wait, args.plot)
        print(f"plot written to {args.plot}")
    return 0
