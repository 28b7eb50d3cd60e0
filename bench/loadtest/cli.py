"""bench.loadtest's command line: the load asked for (1x, the factor, the ramp and hold, or a capacity step
test), the runs, and the table, interval lists and plot printed after."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from bench import loadtest as package
from bench.common import (
    ROOT,
    cluster_env,
    describe_machine,
    pushed_digest,
    reproduce_command,
    sigterm_as_interrupt,
)
from bench.loadtest.report import (
    RunRecord,
    interval_table,
    over_list,
    plot,
    records_from_json,
    records_json,
    side_by_side,
    summarize,
)
from scalekeeper.cli import Parser

SHAPE_PATH = ROOT / "manifests" / "examples" / "loadtest" / "shape.py"
CPU_QUANTITY = re.compile(r"^[0-9]+m?$")


def load_shape() -> ModuleType:
    """The locustfile's pure half (manifests/examples/loadtest/shape.py), loaded by path: the image's
    folder is not a package, and the bench must ask for the load exactly as the pod computes it."""
    if "loadtest_shape" in sys.modules:
        return sys.modules["loadtest_shape"]
    spec = importlib.util.spec_from_file_location("loadtest_shape", SHAPE_PATH)
    assert spec is not None and spec.loader is not None
    shape = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = shape  # its dataclasses look their module up there
    spec.loader.exec_module(shape)
    return shape


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m bench.loadtest", description=(package.__doc__ or "").split("\n")[0])
    p.add_argument("--runs", default="fixed,hpa,policy", help="runs, in order (fixed,hpa,policy)")
    p.add_argument("--base-rps", type=float, default=6.0, help="1x, requests per second (6)")
    p.add_argument("--factor", type=float, default=10.0, help="the peak as a multiple of 1x (10)")
    p.add_argument("--ramp", type=float, default=60.0, help="seconds from 1x to the peak (60)")
    p.add_argument("--hold", type=float, default=180.0, help="seconds the peak is held (180)")
    p.add_argument("--short", action="store_true", help="a rehearsal: ramp 20 s, hold 40 s")
    p.add_argument("--capacity", help="LO:HI:STEP rps: no ramp, a staircase on web fixed at --min-replicas")
    p.add_argument("--step-seconds", type=float, default=30.0, help="each --capacity step's length (30)")
    p.add_argument("--min-replicas", type=int, default=1, help="web's minimum (and the fixed run's) (1)")
    p.add_argument("--max-replicas", type=int, default=10, help="web's maximum (10)")
    p.add_argument(
        "--per-replica", type=float, default=10.0, help="the ScalingPolicy's requests/s per pod (10)"
    )
    p.add_argument("--web-cpu", default="200m", help="web pod's CPU limit (200m)")
    p.add_argument("--web-cpu-request", default="40m", help="web pod's CPU request (40m)")
    p.add_argument("--browse-ms", type=float, default=5.0, help="CPU ms of a browse request (5)")
    p.add_argument("--search-ms", type=float, default=20.0, help="CPU ms of a search request (20)")
    p.add_argument("--rate-per-user", type=float, default=0.5, help="requests/s of one locust user (0.5)")
    p.add_argument("--locust-cpu", default="500m", help="the locust pod's CPU limit (500m)")
    p.add_argument("--aim-ms", type=float, default=200.0, help="the p95 aim per interval, ms (200)")
    p.add_argument("--demo-image", help="the demo app's image (hack/demo-image.sh prints it)")
    p.add_argument("--locust-image", help="the load generator's image (hack/loadtest-image.sh prints it)")
    p.add_argument("--png", type=Path, default=ROOT / "out" / "loadtest.png")
    p.add_argument("--json", type=Path, default=ROOT / "out" / "loadtest.json")
    p.add_argument("--replot", type=Path, help="no run: the tables and the plot again from a run's --json")
    return p


def check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Bad input is one line and exit 2 (Parser.error), before anything touches the cluster."""
    runs = [r for r in args.runs.split(",") if r]
    from bench.loadtest.cluster import RUNS

    if not runs or any(r not in RUNS for r in runs):
        p.error(f"--runs: a comma-separated list of {', '.join(RUNS)}")
    positive = ("base_rps", "factor", "hold", "step_seconds", "per_replica", "rate_per_user", "aim_ms")
    for name in positive:
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    if args.factor < 1 or args.ramp < 0 or args.browse_ms < 0 or args.search_ms < 0:
        p.error("--factor must be >= 1; --ramp, --browse-ms and --search-ms >= 0")
    if not 1 <= args.min_replicas <= args.max_replicas:
        p.error("need 1 <= --min-replicas <= --max-replicas")
    for name in ("web_cpu", "web_cpu_request", "locust_cpu"):
        if not CPU_QUANTITY.match(getattr(args, name)):
            p.error(f"--{name.replace('_', '-')}: a CPU quantity such as 200m or 1")
    if args.capacity is not None:
        try:
            capacity_points(args.capacity, args.step_seconds)
        except ValueError as e:
            p.error(f"--capacity: {e}")
    if args.replot is None and (args.demo_image is None or args.locust_image is None):
        p.error("--demo-image and --locust-image are required for a run (make loadtest passes them)")


def capacity_points(text: str, step_seconds: float) -> str:
    """LO:HI:STEP as a staircase of `step_seconds` steps, in shape.py's t:rps points."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError("LO:HI:STEP, e.g. 2:20:2")
    try:
        lo, hi, step = (float(x) for x in parts)
    except ValueError:
        raise ValueError("LO:HI:STEP must be numbers") from None
    if not (0 < lo <= hi and step > 0):
        raise ValueError("need 0 < LO <= HI and STEP > 0")
    levels = [lo + k * step for k in range(int((hi - lo) / step + 1e-9) + 1)]
    points: list[tuple[float, float]] = []
    for k, rps in enumerate(levels):
        points += [(k * step_seconds, rps), ((k + 1) * step_seconds, rps)]
    shape = load_shape()
    return str(shape.format_points(shape.parse_points(",".join(f"{t:g}:{r:g}" for t, r in points))))


def capacity_table(run: RunRecord, step_seconds: float, aim_ms: float) -> str:
    """Per step: the rate asked, the p95 of each interval after the step's first (the pod settling), and
    whether all of them met the aim without failures."""
    steps: dict[int, list[tuple[float, float | None, int]]] = {}
    for i in run.intervals:
        k = int(i.start // step_seconds)
        if i.start - k * step_seconds < 1e-6 and step_seconds > i.seconds:
            continue  # the step's first interval: the rate just changed
        steps.setdefault(k, []).append((i.target_rps or 0.0, i.p95, i.failures))
    rows = [f"{'asked/s':>8}  p95 per interval (ms)          within {aim_ms:g} ms"]
    for _k, items in sorted(steps.items()):
        ok = all(p is not None and p <= aim_ms and f == 0 for _, p, f in items)
        p95s = " ".join(f"{p:6.0f}" if p is not None else "     -" for _, p, _ in items)
        rows.append(f"{items[0][0]:8.1f}  {p95s:30}  {'yes' if ok else 'no'}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    check(p, args)
    if args.short:
        args.ramp, args.hold = 20.0, 40.0
    args.short = None  # spelled out as --ramp and --hold in the reproduce line
    if args.replot is not None:
        report(records_from_json(json.loads(args.replot.read_text())), args)
        return 0
    from kubernetes import client, config

    from bench.loadtest.cluster import Cluster, Settings, run_one

    shape = load_shape()
    if args.capacity is not None:
        points, names = capacity_points(args.capacity, args.step_seconds), ["fixed"]
    else:
        ramp = shape.ramp_points(args.base_rps, args.factor, args.ramp, args.hold)
        points, names = shape.format_points(ramp), [r for r in args.runs.split(",") if r]
    env = cluster_env()
    api = config.new_client_from_config(config_file=env["KUBECONFIG"])
    c = Cluster(
        env["KUBECONFIG"],
        env["PROMETHEUS_URL"],
        env["REDIS_URL"],
        client.CoreV1Api(api),
        client.AppsV1Api(api),
        client.AutoscalingV2Api(api),
    )
    s = Settings(
        demo_image=pushed_digest(args.demo_image),
        locust_image=pushed_digest(args.locust_image),
        points=points,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
        per_replica=args.per_replica,
        web_cpu=args.web_cpu,
        web_cpu_request=args.web_cpu_request,
        locust_cpu=args.locust_cpu,
        locust_env={
            "RATE_PER_USER": f"{args.rate_per_user:g}",
            "BROWSE_MS": f"{args.browse_ms:g}",
            "SEARCH_MS": f"{args.search_ms:g}",
        },
    )
    duration = max(float(t) for t, _ in shape.parse_points(points))
    started = time.time()
    print(f"machine: {describe_machine(api)}", flush=True)
    print(f"load: {points} (t s : requests/s); runs: {', '.join(names)}", flush=True)
    runs: list[RunRecord] = []
    with sigterm_as_interrupt():
        for name in names:
            print(f"== {name}", flush=True)
            runs.append(run_one(c, name, s, timeout=duration + 300))
    report(runs, args)
    print(f"wall time {time.time() - started:.0f} s")
    print(f"reproduce: {reproduce_command('bench.loadtest', args)}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(records_json(runs), indent=1))
    print(f"records: {args.json}")
    return 0


def report(runs: Sequence[RunRecord], args: argparse.Namespace) -> None:
    aim = args.aim_ms
    for run in runs:
        print(f"\n{run.label} ({run.name}): locust CPU limit {run.locust_cpu_limit}")
        print(interval_table(run, aim))
        s = summarize(run, aim)
        print(
            f"intervals with p95 > {aim:g} ms (start, s): {over_list(run, aim)}; errors {s.failures}; "
            f"peak web replicas {s.peak_replicas} ({s.peak_ready} ready)"
        )
        if run.bottleneck:
            print(f"policy at the end: {run.bottleneck}")
        for note in run.notes[-5:]:
            print(f"  locust: {note}")
        if args.capacity is not None:
            print(capacity_table(run, args.step_seconds, aim))
    print()
    print(side_by_side(runs, aim))
    plot(runs, args.png, aim)
    print(f"plot: {args.png}")


if __name__ == "__main__":
    sys.exit(main())
