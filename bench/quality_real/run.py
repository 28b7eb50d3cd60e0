"""bench.quality_real's run: the slice simulated, then replayed for real into the three legs at once, its
figures reported and plotted, and every namespace and Redis key it made deleted."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from statistics import median
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from bench import quality_real as package
from bench.common import (
    ROOT,
    apiservice_available,
    apply_object,
    cluster_env,
    delete_prefixed,
    images_env,
    kubectl,
    machine,
    redis_client,
    reproduce_command,
    sigterm_as_interrupt,
    stop_process,
    wait_for,
)
from bench.quality import DEMO_POLICY, MINUTE, RuleMetrics
from bench.quality_real.compare import Slice, describe_slice, leg_figures, plot, side_by_side, simulate_slice
from bench.quality_real.legs import (
    CUSTOM_METRICS_APISERVICE,
    EXPORTER,
    EXTERNAL_METRICS_APISERVICE,
    LEGS,
    WORKER,
    Cluster,
    Leg,
    LegWatch,
    delete_namespace,
    plain_hpa,
    prometheus_has,
    read_timings,
    render_demo,
    scaled_object,
    scaling_policy,
    start_operator,
    start_producer,
    worker_logged_ready,
)
from scalekeeper.cli import Parser


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m bench.quality_real", description=(package.__doc__ or "").split("\n")[0])
    p.add_argument("--day", type=int, default=0, help="business day of the trace (default 0: 2003-03-03)")
    p.add_argument("--window-start", default="08:00", help="clock time the slice starts (default 08:00)")
    p.add_argument("--window-minutes", type=float, default=10.0, help="compressed minutes of the slice (10)")
    p.add_argument("--compress", type=float, default=60.0, help="time compression (default 60: 5 min -> 5 s)")
    p.add_argument("--peak-load", type=float, default=0.8, help="busiest interval / capacity at maxReplicas")
    p.add_argument("--policy", type=Path, default=DEMO_POLICY)
    p.add_argument("--queue", default="video")
    p.add_argument("--min-replicas", type=int, default=1, help="every leg's minReplicas (a plain HPA: >= 1)")
    p.add_argument("--service-seconds", type=float, default=2.0, help="mean task time (sleep), default 2")
    p.add_argument(
        "--service-distribution", default="exponential", choices=("exponential", "constant", "lognormal")
    )
    p.add_argument("--start-delay", type=float, default=20.0, help="the simulator's scale-up to ready, s")
    p.add_argument("--target-wait", type=float, default=30.0)
    p.add_argument("--oracle-interval", type=float, default=15.0)
    p.add_argument("--tail", type=float, default=180.0, help="seconds run after the slice (default 180)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--objective-only",
        action="store_true",
        help="scalekeeper's worker sized by its targetWaitSeconds alone (tasksPerWorker dropped)",
    )
    p.add_argument(
        "--peer-tasks-per-worker",
        type=int,
        default=None,
        help="KEDA's listLength and the HPA's AverageValue (default: the worker's tasksPerWorker)",
    )
    p.add_argument("--legs", default="sk,keda,hpa", help="legs to run for real (default sk,keda,hpa)")
    p.add_argument("--demo-image", default=None, help="default: <registry>/scalekeeper-demo:dev")
    p.add_argument("--png", type=Path, default=ROOT / "out" / "bench-quality-real.png")
    p.add_argument("--json", type=Path, default=ROOT / "out" / "bench-quality-real.json")
    return p


@dataclass
class Run:
    """What a run started, for its cleanup (the namespaces it made are in Cluster.made)."""

    id: str
    operator: subprocess.Popen[bytes] | None = None
    producers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    watches: dict[str, LegWatch] = field(default_factory=dict)


def connect(args: argparse.Namespace) -> tuple[Cluster, Any, dict[str, str]]:
    """The cluster `make cluster-up` brought up, its Redis, and the demo's images to run (render's keys)."""
    env = cluster_env()
    images = images_env()
    kubeconfig, prom = env["KUBECONFIG"], env["PROMETHEUS_URL"]
    demo_images = {
        "DEMO_IMAGE": args.demo_image or f"{env['SCALEKEEPER_REGISTRY']}/scalekeeper-demo:dev",
        "EXPORTER_IMAGE": f"{env['SCALEKEEPER_REGISTRY']}/scalekeeper-celery-exporter:dev",
        "REDIS_IMAGE": images["REDIS_IMAGE"],
    }
    api = config.new_client_from_config(config_file=kubeconfig)
    c = Cluster(kubeconfig, prom, env["REDIS_URL"], client.CoreV1Api(api), client.AppsV1Api(api))
    return c, redis_client(c.redis_url), demo_images


def check_autoscalers(kubeconfig: str, legs: str) -> None:
    """KEDA and prometheus-adapter answer, for the legs that need them; an error naming the fix otherwise."""
    if "keda" in legs and not apiservice_available(kubeconfig, EXTERNAL_METRICS_APISERVICE):
        raise SystemExit(f"{EXTERNAL_METRICS_APISERVICE} is not Available: run hack/keda.sh build install")
    if "hpa" in legs and not apiservice_available(kubeconfig, CUSTOM_METRICS_APISERVICE):
        raise SystemExit(
            f"{CUSTOM_METRICS_APISERVICE} is not Available: run hack/prometheus-adapter.sh build install"
        )


def write_schedule(folder: Path, sl: Slice) -> Path:
    """The slice's tasks as the demo's producer reads them (--schedule)."""
    schedule = folder / "tasks.csv"
    schedule.write_text(
        "offset_seconds,service_seconds\n"
        + "".join(f"{a!r},{s!r}\n" for a, s in zip(sl.workload.arrivals, sl.workload.services, strict=True))
    )
    return schedule


def set_up_legs(c: Cluster, r: Any, legs: Sequence[Leg], demo_images: dict[str, str], run: Run) -> None:
    """Each leg's namespace with the demo's objects and a watch on its worker, after deleting what an
    interrupted run left."""
    for leg in legs:  # leftovers of an interrupted run
        with contextlib.suppress(ApiException):
            c.core.read_namespace(leg.namespace)
            delete_namespace(c, leg.namespace)
        delete_prefixed(r, f"{leg.namespace}:")
    for leg in legs:
        c.core.create_namespace({"metadata": {"name": leg.namespace}})
        c.made.append(leg.namespace)
        for obj in render_demo(demo_images, leg.namespace):
            apply_object(c.kubeconfig, leg.namespace, obj)
        run.watches[leg.key] = LegWatch(c.core, c.apps, leg.namespace)


def wait_legs_ready(c: Cluster, legs: Sequence[Leg], queue: str) -> None:
    """Every leg's exporter and worker rolled out, the worker listening, its queue's series in Prometheus."""
    for leg in legs:
        for d in (EXPORTER, WORKER):
            kubectl(c.kubeconfig, "-n", leg.namespace, "rollout", "status", f"deploy/{d}", "--timeout=180s")
        ns = leg.namespace
        wait_for(
            f"{ns}'s worker ready",
            partial(worker_logged_ready, c.kubeconfig, ns),
            120,
            every=1.0,
        )
        series = f'celery_queue_waiting_tasks{{namespace="{ns}",queue="{queue}"}}'
        wait_for(f"{ns}'s queue series in Prometheus", partial(prometheus_has, c.prom, series), 120, 1.0)


def start_autoscalers(
    c: Cluster, legs: Sequence[Leg], sl: Slice, queue: str, objective_only: bool, run: Run
) -> None:
    """Each leg's autoscaler: scalekeeper's policy (and the local operator), KEDA's ScaledObject, the HPA."""
    for leg in legs:
        if leg.key == "sk":
            run.operator = start_operator(c.kubeconfig, c.prom, leg.namespace)
            policy = scaling_policy(sl.spec, sl.raw_policy, queue, leg.namespace, objective_only)
            apply_object(c.kubeconfig, leg.namespace, policy)
        elif leg.key == "keda":
            apply_object(c.kubeconfig, leg.namespace, scaled_object(sl.peer, leg.namespace))
        else:
            apply_object(c.kubeconfig, leg.namespace, plain_hpa(sl.peer))


def replay(
    c: Cluster, r: Any, legs: Sequence[Leg], sl: Slice, queue: str, schedule: Path, run: Run
) -> tuple[float, list[float]]:
    """The slice's tasks published into every leg at once, from one start instant, until the horizon (a
    status line a minute), then a bounded while for the tasks started by then to finish. Returns the start
    instant and the machine's 1-min load averages."""
    horizon = sl.horizon
    time.sleep(20)  # the autoscalers' first look at an empty queue, before the load starts
    origin = time.time() + 5.0
    for leg in legs:
        run.producers.append(start_producer(c.redis_url, leg.namespace, queue, schedule, origin, run.id))
    print(
        f"running {', '.join(leg.namespace for leg in legs)} at once on this machine (they share its "
        f"CPUs), {horizon / MINUTE:.1f} min from {datetime.fromtimestamp(origin):%H:%M:%S}",
        flush=True,
    )
    loads: list[float] = []  # the machine's 1-min load average: the legs share it with all else
    while time.time() < origin + horizon:
        time.sleep(min(60.0, max(0.0, origin + horizon - time.time())))
        now = time.time() - origin
        status = "; ".join(
            f"{leg.key}: {run.watches[leg.key].current_replicas()} replicas, "
            f"{r.llen(f'{leg.namespace}:{queue}')} waiting, "
            f"{r.llen(f'{leg.namespace}:demo:timings:{queue}')} done"
            for leg in legs
        )
        loads.append(os.getloadavg()[0])
        print(f"  t={now:4.0f} s  load {loads[-1]:.1f}  {status}", flush=True)
    for w in run.watches.values():
        w.stop.set()
    # Tasks started before the horizon may still run: give them a bounded while to record.
    with contextlib.suppress(TimeoutError):
        wait_for(
            "the tasks started by the horizon to finish",
            lambda: all(
                r.llen(f"{leg.namespace}:demo:timings:{queue}") >= len(sl.workload.arrivals)
                or r.hlen(f"{leg.namespace}:unacked") == 0
                for leg in legs
            ),
            60,
        )
    return origin, loads


def real_figures(
    r: Any, legs: Sequence[Leg], sl: Slice, args: argparse.Namespace, run: Run, origin: float
) -> tuple[dict[str, dict[str, Any]], dict[str, RuleMetrics]]:
    """Each leg's record and figures, from its task timings in Redis and its watched pods and replicas."""
    real: dict[str, dict[str, Any]] = {}
    real_m: dict[str, RuleMetrics] = {}
    for leg in legs:
        timings = read_timings(r, leg.namespace, args.queue, run.id, origin)
        pods = run.watches[leg.key].pods(origin)
        replicas = run.watches[leg.key].replica_samples(origin)
        real[leg.key], real_m[leg.key] = leg_figures(leg, sl, timings, pods, replicas, args.target_wait)
    return real, real_m


def other_namespaces(c: Cluster) -> list[str]:
    """What else ran on the machine: the namespaces that are neither the legs' nor the system's."""
    return sorted(
        ns.metadata.name
        for ns in c.core.list_namespace().items
        if not ns.metadata.name.startswith(("slice-", "kube-", "default", "local-path"))
    )


def write_json(
    args: argparse.Namespace,
    sl: Slice,
    real: dict[str, dict[str, Any]],
    loads: list[float],
    others: list[str],
) -> None:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": machine(),
                "load_average_1min": loads,
                "other_namespaces": others,
                "command": reproduce_command("bench.quality_real", args),
                "slice": {
                    "day": str(sl.day),
                    "window_start": args.window_start,
                    "tasks": len(sl.workload.arrivals),
                    "tasks_per_call": sl.scale,
                    "horizon_seconds": sl.horizon,
                },
                "worker": sl.worker.model_dump(mode="json", by_alias=True, exclude_none=True),
                "objective_only": args.objective_only,
                "peer_tasks_per_worker": sl.peer.tasks_per_worker,
                "real": {
                    k: {kk: vv for kk, vv in v.items() if kk not in ("arrivals", "waits")}
                    for k, v in real.items()
                },
                "simulated": {k: asdict(v) for k, v in sl.sim_metrics.items()},
            },
            indent=1,
        )
    )


def clean_up(c: Cluster, r: Any, run: Run, began: float) -> None:
    """The producers, the watches, the policy while the operator can still drop its finalizer, the
    operator, then every namespace and Redis key the run made."""
    for p in run.producers:
        if p.poll() is None:
            p.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(10)
    for w in run.watches.values():
        w.stop.set()
    if "slice-sk" in c.made:
        with contextlib.suppress(RuntimeError):
            kubectl(c.kubeconfig, "-n", "slice-sk", "delete", "scalingpolicy", "--all", "--timeout=30s")
    if run.operator is not None:
        stop_process(run.operator, timeout=20)
    for ns in c.made:
        delete_namespace(c, ns)
        delete_prefixed(r, f"{ns}:")
    print(f"cleaned up {', '.join(c.made) or 'nothing'}; total {time.time() - began:.0f} s", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    began = time.time()
    parser = build_parser()
    args = parser.parse_args(argv)
    unknown = [k for k in args.legs.split(",") if k and k not in LEGS]
    if unknown:
        parser.error(f"--legs: unknown {', '.join(unknown)} (known: {', '.join(LEGS)})")
    legs = [LEGS[k] for k in args.legs.split(",") if k]
    try:
        sl = simulate_slice(args)
    except ValueError as e:
        parser.error(str(e))
    c, r, demo_images = connect(args)
    print(f"machine: {machine()}", flush=True)
    print(describe_slice(sl, args), flush=True)
    check_autoscalers(c.kubeconfig, args.legs)

    run = Run(f"r{int(began)}")
    with sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="quality-real-") as tmp:
        try:
            schedule = write_schedule(Path(tmp), sl)
            set_up_legs(c, r, legs, demo_images, run)
            wait_legs_ready(c, legs, args.queue)
            start_autoscalers(c, legs, sl, args.queue, args.objective_only, run)
            origin, loads = replay(c, r, legs, sl, args.queue, schedule, run)
            real, real_m = real_figures(r, legs, sl, args, run, origin)
            report(args, legs, real, real_m, sl.sim_metrics, sl, sl.horizon)
            others = other_namespaces(c)
            print(
                f"machine load during the run (1-min load average, {os.cpu_count()} CPUs): mean "
                f"{sum(loads) / max(1, len(loads)):.1f}, max {max(loads, default=0.0):.1f}; other namespaces "
                f"at the end: {', '.join(others)}"
            )
            title = (
                f"fpp3/bank_calls {sl.day} {args.window_start} "
                f"+ {args.window_minutes * args.compress / 60:g} h, "
                f"{args.compress:g}x compressed: real (solid) vs simulated (dashed)"
            )
            plot(args.png, title, sl.trace, sl.horizon, args.target_wait, real, sl.sim)
            write_json(args, sl, real, loads, others)
            print(f"plot: {args.png}\njson: {args.json}")
            print(f"reproduce: {reproduce_command('bench.quality_real', args)}")
            print(f"wall time: {time.time() - began:.0f} s (cleanup follows)", flush=True)
            return 0
        finally:
            clean_up(c, r, run, began)


def report(
    args: argparse.Namespace,
    legs: Sequence[Leg],
    real: dict[str, dict[str, Any]],
    real_m: dict[str, RuleMetrics],
    sim_m: dict[str, RuleMetrics],
    sl: Slice,
    horizon: float,
) -> None:
    worker = sl.worker
    print()
    print(
        f"worker: queue {worker.queue} of {args.policy.name} (minReplicas {worker.min_replicas}, maxReplicas "
        f"{worker.max_replicas}, scalekeeper: tasksPerWorker {worker.tasks_per_worker}, targetWaitSeconds "
        f"{worker.target_wait_seconds}{' (the objective alone)' if args.objective_only else ''}; KEDA's "
        f"listLength and the HPA's AverageValue {sl.peer.tasks_per_worker}, "
        f"concurrency {worker.concurrency} x "
        f"prefetch {worker.prefetch_multiplier}); simulator start delay {args.start_delay:g} s, target wait "
        f"{args.target_wait:g} s, horizon {horizon:g} s; the real legs ran at once and shared this machine"
    )
    pairs = [(f"{leg.label} vs {leg.sim_rule}", real_m[leg.key], sim_m[leg.sim_rule]) for leg in legs]
    print()
    print(side_by_side(pairs, sim_m.get("oracle"), args.target_wait))
    print()
    for leg in legs:
        d = real[leg.key]
        delays = d["pod_creation_to_first_task"]
        shown = f"median {median(delays):.1f} s over {len(delays)} pods" if delays else "no new pods"
        lags = d["scale_up_to_pod_created"]
        lag = f"median {median(lags):.1f} s, max {lags[-1]:.1f} s" if lags else "no scale-up"
        print(
            f"{leg.namespace}: {d['tasks_recorded']} task records, publish lag p95 "
            f"{d['publish_lag_p95']:.2f} s; spec.replicas raised -> pod created {lag}; pod created -> its "
            f"first task {shown}; slot use {real_m[leg.key].slot_use:.0%} (simulated "
            f"{sim_m[leg.sim_rule].slot_use:.0%})"
        )
