"""Reaction time beside a peer: scalekeeper and KEDA sizing two Deployments from one signal, same steps.

    PYTHONPATH=operator .venv/bin/python -m bench.reaction_peer [--signal prometheus|redis-list] [--steps 20]

Needs `make cluster-up`, `make image` and KEDA installed (`hack/keda.sh build install`); `--signal redis-list`
also the demo image (`hack/demo-image.sh`). In one namespace <--namespace-prefix><random>: a signal and two
Deployments. `target` is sized by a ScalingPolicy (intervalSeconds 1, no stabilization, no rate limit; the
operator runs as a local process), `target-keda` by a KEDA ScaledObject; both size as ceil(value / 10),
min 1, max 10. The signal (--signal):

  prometheus   bench.reaction's gauge exporter (value set with kubectl exec). The policy's readReplicas
               metric and KEDA's prometheus trigger (threshold 10, AverageValue) run the same query.
  redis-list   the length of a real Celery queue list in the cluster's Redis (the demo's broker), under a
               key prefix unique to the run. The demo's producer publishes 100 demo.work tasks to queue
               `video` once; a step then LPUSHes some of those messages back or RPOPs them (what kombu's
               producer and consumer do), one Redis command, and no consumer runs, so the length stays
               where the step put it. scalekeeper reads it as a user would: the demo's queue exporter
               (rendered by manifests/examples/demo/render.py with the same key prefix), scraped by the
               cluster's Prometheus, and a ScalingPolicy worker on celery_queue_waiting_tasks
               (tasksPerWorker 10). KEDA reads LLEN itself with its redis trigger (listLength 10).

Two KEDA settings, one after the other; scalekeeper is measured on every step of both:

  1. KEDA defaults: pollingInterval 30, cooldownPeriod 300, the HPA's default behavior. Its scale-down
     waits out the default 300 s stabilization window, so steps alternating 30/70 would cost over 5 min
     each: this setting is measured on scale-up steps only, a ladder 30 -> 40 -> ... -> 100 (one replica a
     step), then on one scale-down step 100 -> 30, reported on its own.
  2. KEDA at its fastest: pollingInterval 1 and horizontalPodAutoscalerConfig.behavior with
     stabilizationWindowSeconds 0 and a 100 %/1 s policy both ways, plus a 100 pods/1 s policy (selectPolicy
     Max): 100 % alone caps 3 -> 7 at 6 per HPA sync. --steps steps alternating 30/70 as bench.reaction.

For each step: written = the instant the write returned (kubectl exec, or the Redis command), queryable =
the first instant Prometheus answers the new value (polled every 50 ms), seen = the watch event showing the
target's new spec.replicas. With prometheus both targets are timed from queryable (both read Prometheus).
With redis-list KEDA is timed from written (it reads Redis), scalekeeper from written and from queryable,
and both ratios are printed. A ScaledObject scales 1..N through an HPA, which reads the metric only on the
HPA controller's sync loop (kube-controller-manager --horizontal-pod-autoscaler-sync-period, 15 s by
default; read from its static pod). The gap between steps is random, 0.5 s to 0.5 s + that period, so steps
fall at random phases of the loop (a fixed gap would lock on to it). Prints p50/p95/max per row and setting,
the p95 ratios, the machine and the sync period; writes out/reaction-peer[-redis-list].png and .json. One
run stays under 20 minutes (--budget).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import threading
import time
import urllib.parse
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client, config, watch

from bench.common import (
    ROOT,
    apiservice_condition,
    apply_object,
    cluster_env,
    delete_prefixed,
    demo_render,
    host_line,
    images_env,
    kubectl,
    prometheus_value,
    redis_client,
    wait_for,
    wait_namespace_gone,
)
from bench.reaction import (
    SLEEPER,
    create_deployment,
    pct,
    scaling_policy,
    set_value,
    start_exporter,
    start_operator,
    stop_operator,
    wait_queryable,
)

SK, KEDA = "target", "target-keda"
LABEL = {SK: "scalekeeper", KEDA: "KEDA"}
PROMETHEUS_IN_CLUSTER = "http://prometheus.scalekeeper-system.svc:9090"
APISERVICE = "v1beta1.external.metrics.k8s.io"
FASTEST = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 1},
        {"type": "Pods", "value": 100, "periodSeconds": 1},
    ],
}
LADDER = [40, 50, 60, 70, 80, 90, 100]
PER_REPLICA = 10
MAX_REPLICAS = 10
QUEUE = "video"  # one of the demo's queues (its producer refuses others)
EXPORTER = "queue-exporter"  # the demo's exporter (manifests/examples/demo/k8s/40-exporter.yaml)
POOL = 100  # messages published once; the highest step (LADDER's 100) uses them all
SIGNALS = ("prometheus", "redis-list")


def replicas_for(value: int) -> int:
    return min(MAX_REPLICAS, max(1, math.ceil(value / PER_REPLICA)))


def go_duration(text: str) -> float:
    """Seconds in a Go duration such as 15s, 1m0s, 500ms."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def hpa_sync_period(kubeconfig: str) -> tuple[float, str]:
    """The HPA controller's sync period from kube-controller-manager's static pod, and where it came from."""
    pods = json.loads(
        kubectl(
            kubeconfig,
            "-n",
            "kube-system",
            "get",
            "pod",
            "-l",
            "component=kube-controller-manager",
            "-o",
            "json",
        )
    )
    for pod in pods["items"]:
        for container in pod["spec"]["containers"]:
            for arg in container.get("command", []) + container.get("args", []):
                if arg.startswith("--horizontal-pod-autoscaler-sync-period="):
                    return go_duration(arg.split("=", 1)[1]), f"kube-controller-manager {arg}"
    return 15.0, "kube-controller-manager default (no --horizontal-pod-autoscaler-sync-period flag)"


def prometheus_trigger(query: str) -> dict[str, Any]:
    return {
        "type": "prometheus",
        "metricType": "AverageValue",
        "metadata": {"serverAddress": PROMETHEUS_IN_CLUSTER, "query": query, "threshold": str(PER_REPLICA)},
    }


def redis_list_trigger(broker_url: str, list_name: str) -> dict[str, Any]:
    """KEDA's redis trigger on one list of the broker at `broker_url` (redis://host:port/db)."""
    url = urllib.parse.urlsplit(broker_url)
    if url.scheme != "redis" or not url.hostname:
        raise ValueError(f"not a plain redis:// URL: {broker_url!r}")
    return {
        "type": "redis",
        "metricType": "AverageValue",
        "metadata": {
            "address": f"{url.hostname}:{url.port or 6379}",
            "databaseIndex": url.path.strip("/") or "0",
            "listName": list_name,
            "listLength": str(PER_REPLICA),
        },
    }


def scaled_object(trigger: dict[str, Any], fastest: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": KEDA},
        "minReplicaCount": 1,
        "maxReplicaCount": MAX_REPLICAS,
        "triggers": [trigger],
    }
    if fastest:
        spec["pollingInterval"] = 1
        spec["advanced"] = {
            "horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": FASTEST, "scaleDown": FASTEST}}
        }
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": KEDA},
        "spec": spec,
    }


def worker_policy(ns: str, queue: str) -> dict[str, Any]:
    """A ScalingPolicy sizing `target` as a worker of `queue`, reading the demo exporter of `ns` only
    (other namespaces run the demo with the same queue names), behavior as bench.reaction's policy."""
    selector = f'namespace="{ns}",queue="<queue>"'
    fast = scaling_policy("unused", 1)["spec"]["readReplicas"]["behavior"]
    return {
        "apiVersion": "scalekeeper.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "bench"},
        "spec": {
            "intervalSeconds": 1,
            "workers": [
                {
                    "queue": queue,
                    "deployment": SK,
                    "minReplicas": 1,
                    "maxReplicas": MAX_REPLICAS,
                    "tasksPerWorker": PER_REPLICA,
                    "metrics": {
                        "waiting": f"celery_queue_waiting_tasks{{{selector}}}",
                        "inFlight": f"celery_queue_inflight_tasks{{{selector}}}",
                    },
                    "behavior": fast,
                }
            ],
        },
    }


class Signal(Protocol):
    """What a step writes, and when Prometheus first answers it."""

    def write(self, value: int) -> float:
        """Set the load to `value`; the instant the write returned."""
        ...

    def queryable(self, value: int) -> float:
        """The first instant Prometheus answers `value` (blocks until then)."""
        ...


@dataclass
class GaugeSignal:
    """bench.reaction's gauge exporter: a file in its pod, set with kubectl exec."""

    kubeconfig: str
    ns: str
    prom: str
    query: str

    def write(self, value: int) -> float:
        set_value(self.kubeconfig, self.ns, value)
        return time.time()

    def queryable(self, value: int) -> float:
        return wait_queryable(self.prom, self.query, value)


class RedisList(Protocol):
    """The redis-py calls RedisListSignal makes (a protocol so the unit tests can pass a fake)."""

    def lpush(self, name: str, *values: bytes) -> Any: ...

    def rpop(self, name: str, count: int | None = None) -> Any: ...


@dataclass
class RedisListSignal:
    """A Celery queue's Redis list, moved by real messages: LPUSH (kombu's publish) puts spare ones back,
    RPOP (its consumer's pop) takes them off. Each step is one command, so the length jumps at once."""

    redis: RedisList
    key: str
    prom: str
    query: str
    length: int
    spare: list[bytes] = field(default_factory=list)  # messages not in the list now

    def write(self, value: int) -> float:
        change = value - self.length
        if change > len(self.spare):
            raise ValueError(f"{value} messages asked, {self.length + len(self.spare)} in the pool")
        if value < 0:
            raise ValueError(f"a list length cannot be {value}")
        if change > 0:
            moved, self.spare = self.spare[-change:], self.spare[:-change]
            self.redis.lpush(self.key, *moved)
        elif change < 0:
            popped = self.redis.rpop(self.key, -change) or []
            if len(popped) != -change:
                raise RuntimeError(f"RPOP {self.key} {-change} returned {len(popped)} messages")
            self.spare.extend(popped)
        returned = time.time()
        self.length = value
        return returned

    def queryable(self, value: int) -> float:
        return wait_queryable(self.prom, self.query, value)


class Replicas:
    """Watches the namespace's Deployments: when each first showed each spec.replicas since forget()."""

    def __init__(self, apps: client.AppsV1Api, ns: str) -> None:
        self.apps, self.ns = apps, ns
        self.seen: dict[tuple[str, int], float] = {}
        self.current: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                w = watch.Watch()
                for event in w.stream(self.apps.list_namespaced_deployment, self.ns, timeout_seconds=600):
                    obj, now = event["object"], time.time()
                    with self.lock:
                        self.seen.setdefault((obj.metadata.name, int(obj.spec.replicas)), now)
                        self.current[obj.metadata.name] = int(obj.spec.replicas)
                    if self.stop.is_set():
                        w.stop()
            except Exception:  # a dropped watch is re-opened; its list re-reads every target
                time.sleep(0.5)

    def forget(self, name: str, replicas: int) -> None:
        with self.lock:
            self.seen.pop((name, replicas), None)

    def wait(self, name: str, replicas: int, deadline: float) -> float | None:
        while time.time() < deadline:
            with self.lock:
                if (name, replicas) in self.seen:
                    return self.seen[(name, replicas)]
            time.sleep(0.02)
        return None


@dataclass
class Step:
    phase: str
    value: int
    replicas: int
    written: float  # the write returned (epoch seconds)
    queryable: float  # Prometheus first answered the value
    seen: dict[str, float | None] = field(default_factory=dict)  # moving targets; None: timed out

    def reaction(self, target: str, origin: str) -> float | None:
        """Seconds from `origin` ("written" or "queryable") to the target's new replicas; None if it
        timed out. Only for targets the step moved (KeyError otherwise)."""
        seen = self.seen[target]
        return None if seen is None else seen - (self.written if origin == "written" else self.queryable)


@dataclass(frozen=True)
class Row:
    target: str
    origin: str  # "written" or "queryable"
    label: str


# What each signal's table shows. KEDA comes last; each scalekeeper row gets the ratio KEDA p95 / its p95.
ROWS = {
    "prometheus": (Row(SK, "queryable", "scalekeeper"), Row(KEDA, "queryable", "KEDA")),
    "redis-list": (
        Row(SK, "written", "scalekeeper, from write"),
        Row(SK, "queryable", "scalekeeper, from queryable"),
        Row(KEDA, "written", "KEDA, from write"),
    ),
}


@dataclass(frozen=True)
class Stats:
    row: Row
    n: int
    p50: float
    p95: float
    max: float
    timed_out: int
    ratio: float | None  # KEDA's p95 / this row's p95, on scalekeeper rows


def seconds(value: float | None) -> str:
    return "timeout" if value is None else f"{value:.2f} s"


def summary(values: list[float | None], timeout: float) -> tuple[list[float], int]:
    """The measured values, a timeout counted as the timeout itself (so percentiles are lower bounds)."""
    return [timeout if v is None else v for v in values], sum(v is None for v in values)


def table(steps: list[Step], rows: tuple[Row, ...], timeout: float) -> list[Stats]:
    """p50/p95/max of each row over the steps that moved its target, and the p95 ratios."""
    measured: list[tuple[Row, list[float], int]] = []
    for row in rows:
        values, missed = summary(
            [s.reaction(row.target, row.origin) for s in steps if row.target in s.seen], timeout
        )
        if values:
            measured.append((row, values, missed))
    keda = next((pct(v, 0.95) for r, v, _ in measured if r.target == KEDA), None)
    out = []
    for row, values, missed in measured:
        p95 = pct(values, 0.95)
        ratio = keda / p95 if keda is not None and row.target != KEDA and p95 > 0 else None
        out.append(Stats(row, len(values), pct(values, 0.5), p95, max(values), missed, ratio))
    return out


@dataclass
class Bench:
    kubeconfig: str
    signal: Signal
    watcher: Replicas
    rng: random.Random
    sync: float
    deadline: float
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def run(self, phase: str, values: list[int], timeout: float) -> None:
        for value in values:
            if time.time() + timeout > self.deadline:
                self.notes.append(f"{phase}: stopped before a {value} step, time budget spent")
                return
            replicas = replicas_for(value)
            moving = [t for t in (SK, KEDA) if self.watcher.current.get(t) != replicas]
            for t in moving:
                self.watcher.forget(t, replicas)
            written = self.signal.write(value)
            queryable = self.signal.queryable(value)
            step = Step(phase, value, replicas, written, queryable)
            for t in moving:
                step.seen[t] = self.watcher.wait(t, replicas, max(written, queryable) + timeout)
            self.steps.append(step)
            shown = ", ".join(f"{LABEL[t]} {seconds(step.reaction(t, 'written'))}" for t in moving)
            print(
                f"  {phase} step {len(self.steps)}: value {value} -> {replicas} replicas "
                f"(queryable {queryable - written:.2f} s after the write); from the write: {shown}",
                flush=True,
            )
            time.sleep(self.rng.uniform(0.5, 0.5 + self.sync))

    def settle(self, value: int, timeout: float) -> None:
        self.signal.write(value)
        replicas, end = replicas_for(value), time.time() + timeout
        for t in (SK, KEDA):
            if self.watcher.wait(t, replicas, end) is None:
                raise RuntimeError(f"{t} did not reach {replicas} replicas within {timeout:.0f} s")


def keda_ready(kubeconfig: str) -> str:
    """KEDA's operator image, once its APIService answers; an error naming the fix otherwise."""
    try:
        status = apiservice_condition(kubeconfig, APISERVICE)
        image = kubectl(
            kubeconfig,
            "-n",
            "keda",
            "get",
            "deploy",
            "keda-operator",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        )
    except RuntimeError as err:
        raise SystemExit(
            f"KEDA is not installed ({err.args[0].strip()}): run hack/keda.sh build install"
        ) from err
    if status != "True":
        raise SystemExit(f"APIService {APISERVICE} is not Available: check hack/keda.sh install")
    return image


def hpa_behavior(kubeconfig: str, ns: str) -> dict[str, Any]:
    out = kubectl(kubeconfig, "-n", ns, "get", "hpa", f"keda-hpa-{KEDA}", "-o", "json")
    return dict(json.loads(out)["spec"].get("behavior") or {})


@dataclass
class Setup:
    """One signal, ready: what the steps write, and what each side reads it with."""

    signal: Signal
    trigger: dict[str, Any]
    policy: dict[str, Any]
    describe: str


def setup_gauge(apps: client.AppsV1Api, kubeconfig: str, prom: str, ns: str, image: str) -> Setup:
    query = start_exporter(apps, kubeconfig, prom, ns, image)
    return Setup(
        GaugeSignal(kubeconfig, ns, prom, query),
        prometheus_trigger(query),
        scaling_policy(query, 1, SK),
        f"gauge exporter, query {query}; KEDA prometheus trigger on the same query",
    )


def setup_redis_list(kubeconfig: str, prom: str, redis_url: str, ns: str, env: dict[str, str]) -> Setup:
    """The demo's queue exporter in `ns` with key prefix "<ns>:", and POOL real tasks in its `video` list."""
    render = demo_render()

    prefix = f"{ns}:"
    images = {"DEMO_IMAGE": env["DEMO_IMAGE"], "REDIS_IMAGE": env["REDIS_IMAGE"]}
    # Only the settings and the exporter: no worker may consume the list.
    objects = {
        (obj["kind"], obj["metadata"]["name"]): obj for obj in render.render(images, key_prefix=prefix)
    }
    deployment = objects[("Deployment", EXPORTER)]
    # The exporter runs as a bare Pod of the rendered Deployment's template: on a cluster busy with
    # thousands of Deployments (make bench-scale) the deployment controller can be minutes behind, while
    # the scheduler and the kubelet are not.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": EXPORTER, **deployment["spec"]["template"]["metadata"]},
        "spec": deployment["spec"]["template"]["spec"],
    }
    rendered = [objects[("ConfigMap", "demo-config")], objects[("Service", EXPORTER)], pod]
    apply_object(kubeconfig, ns, {"apiVersion": "v1", "kind": "List", "items": rendered})
    kubectl(kubeconfig, "-n", ns, "wait", "--for=condition=Ready", f"pod/{EXPORTER}", "--timeout=300s")
    # Real Celery messages, published by the demo's own producer (kombu's LPUSH) in the exporter's pod.
    kubectl(
        kubeconfig,
        "-n",
        ns,
        "exec",
        f"pod/{EXPORTER}",
        "--",
        "python",
        "-m",
        "scalekeeper_demo.produce",
        "--queue",
        QUEUE,
        "--count",
        str(POOL),
    )
    key = prefix + QUEUE
    broker = redis_client(redis_url)
    length = int(broker.llen(key))
    if length != POOL:
        raise RuntimeError(f"{key}: {length} messages after publishing {POOL}")
    query = f'celery_queue_waiting_tasks{{namespace="{ns}",queue="{QUEUE}"}}'
    wait_for("the exporter's queue length in Prometheus", lambda: prometheus_value(prom, query) == POOL, 180)
    return Setup(
        RedisListSignal(broker, key, prom, query, POOL),
        redis_list_trigger(render.DEFAULT_BROKER_URL, key),
        worker_policy(ns, QUEUE),
        f"Redis list {key} (Celery queue {QUEUE}, {POOL} real demo.work messages); scalekeeper: queue "
        f"exporter + Prometheus, {query}; KEDA: redis trigger, LLEN {key}",
    )


SETTINGS = {
    "defaults-up": (
        "defaults, up",
        "KEDA defaults (pollingInterval 30, cooldownPeriod 300, default HPA behavior), scale-up steps only: "
        "ladder 30->40->...->100, one replica a step",
    ),
    "defaults-down": (
        "defaults, down",
        "KEDA defaults, one scale-down step 100->30 (the default 300 s scale-down stabilization window)",
    ),
    "fastest": (
        "fastest",
        "KEDA fastest (pollingInterval 1; HPA behavior stabilization 0, 100%/1s + 100 pods/1s both ways), "
        "steps alternating 30/70",
    ),
}
ORIGINS = {
    "queryable": "value queryable in Prometheus",
    "written": "the write returned (Redis command or kubectl exec)",
}


def results(bench: Bench, signal: str, timeouts: dict[str, float]) -> dict[str, list[Stats]]:
    return {
        phase: table([s for s in bench.steps if s.phase == phase], ROWS[signal], timeouts[phase])
        for phase in SETTINGS
    }


def report(
    bench: Bench,
    signal: str,
    setup: Setup,
    machine: str,
    sync: tuple[float, str],
    keda_image: str,
    timeouts: dict[str, float],
) -> None:
    print()
    print(f"machine: {machine}")
    print(f"HPA controller sync period: {sync[0]:g} s ({sync[1]}); Prometheus scrape interval 1 s")
    print(f"KEDA image {keda_image}; scalekeeper: local operator, ScalingPolicy intervalSeconds 1")
    print(f"signal {signal}: {setup.describe}")
    origins = sorted({row.origin for row in ROWS[signal]})
    for origin in origins:
        print(f"reaction from {origin} = {ORIGINS[origin]} -> watch event of the target's new spec.replicas")
    width = max(len(row.label) for row in ROWS[signal])
    columns = ("n", 3), ("p50", 8), ("p95", 8), ("max", 8), ("p95 ratio", 10)
    print(f"{'setting':15} {'steps':>5}  {'target':{width}}" + "".join(f" {c:>{w}}" for c, w in columns))
    for phase, stats in results(bench, signal, timeouts).items():
        name = SETTINGS[phase][0]
        if not stats:
            print(f"{name:15} {0:5d}  (not run)")
            continue
        count = sum(s.phase == phase for s in bench.steps)
        for i, st in enumerate(stats):
            ratio = "" if st.ratio is None else f"{st.ratio:9.1f}x"
            late = (
                f"  ({st.timed_out} timed out at {timeouts[phase]:.0f} s, counted as that)"
                if st.timed_out
                else ""
            )
            head = f"{name:15} {count:5d}" if i == 0 else " " * 21
            line = (
                f"{head}  {st.row.label:{width}} {st.n:3d} {st.p50:7.2f}s {st.p95:7.2f}s "
                f"{st.max:7.2f}s {ratio:>10}{late}"
            )
            print(line.rstrip())
    scrape = [s.queryable - s.written for s in bench.steps]
    if scrape:
        p50, p95s = pct(scrape, 0.5), pct(scrape, 0.95)
        print(f"write returned -> queryable in Prometheus, all steps: p50 {p50:.2f}s p95 {p95s:.2f}s")
    print("p95 ratio = KEDA p95 / that row's p95 over the same steps")
    for name, text in SETTINGS.values():
        print(f"  {name}: {text}")
    for note in bench.notes:
        print(f"note: {note}")


def write_json(
    bench: Bench,
    signal: str,
    setup: Setup,
    meta: dict[str, Any],
    timeouts: dict[str, float],
    path: str,
) -> None:
    stats = {
        phase: [{**asdict(st), "row": asdict(st.row)} for st in rows]
        for phase, rows in results(bench, signal, timeouts).items()
    }
    doc = {
        "signal": signal,
        "describe": setup.describe,
        **meta,
        "settings": {phase: text for phase, (_, text) in SETTINGS.items()},
        "timeouts": timeouts,
        "stats": stats,
        "steps": [asdict(s) for s in bench.steps],
        "notes": bench.notes,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1))
    print(f"json: {path}")


def plot(bench: Bench, signal: str, sync: float, png: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    panels = (
        (axes[0], ("fastest",), "KEDA fastest vs scalekeeper, alternating 30/70", False),
        (axes[1], ("defaults-up", "defaults-down"), "KEDA defaults vs scalekeeper (last: scale-down)", True),
    )
    styles = ("o-", "^-", "s--")
    for ax, phases, title, log in panels:
        steps = [s for s in bench.steps if s.phase in phases]
        for row, style in zip(ROWS[signal], styles, strict=False):
            points = [
                (i + 1, s.reaction(row.target, row.origin))
                for i, s in enumerate(steps)
                if row.target in s.seen and s.seen[row.target] is not None
            ]
            # a reaction can be a few ms below 0 (Prometheus polled every 50 ms): floor it for the log scale
            ax.plot([x for x, _ in points], [max(0.01, y or 0.0) for _, y in points], style, label=row.label)
        ax.axhline(sync, color="grey", linestyle=":", label=f"HPA sync period {sync:g} s")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("to scale visible (s)")
        ax.set_title(f"{title} [{signal}]")
        ax.grid(alpha=0.3)
        ax.legend()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100, bbox_inches="tight")
    print(f"plot: {png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signal", choices=SIGNALS, default="prometheus", help="what the steps move")
    parser.add_argument(
        "--steps", type=int, default=20, help="steps alternating 30/70 for KEDA at its fastest"
    )
    parser.add_argument(
        "--budget", type=float, default=18 * 60, help="seconds for the steps (whole run < 20 min)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random gaps between steps")
    parser.add_argument(
        "--settings", default="defaults,fastest", help="KEDA settings to run, in order: defaults,fastest"
    )
    parser.add_argument(
        "--namespace-prefix", default="bench-keda-", help="the run's namespace: prefix + random"
    )
    parser.add_argument("--png", default=None, help="default out/reaction-peer[-redis-list].png")
    parser.add_argument("--json", default=None, help="default out/reaction-peer[-redis-list].json")
    args = parser.parse_args()
    started = time.time()
    stem = "reaction-peer" if args.signal == "prometheus" else f"reaction-peer-{args.signal}"
    png = args.png or str(ROOT / "out" / f"{stem}.png")
    json_path = args.json or str(ROOT / "out" / f"{stem}.json")

    env = cluster_env()
    images = images_env()
    kubeconfig, prom = env["KUBECONFIG"], env["PROMETHEUS_URL"]
    image = f"{env['SCALEKEEPER_REGISTRY']}/scalekeeper:dev"
    demo = {
        "DEMO_IMAGE": os.environ.get(
            "SCALEKEEPER_DEMO_IMAGE", f"{env['SCALEKEEPER_REGISTRY']}/scalekeeper-demo:dev"
        ),
        "REDIS_IMAGE": images.get("REDIS_IMAGE", ""),
    }
    keda_image = keda_ready(kubeconfig)
    sync = hpa_sync_period(kubeconfig)
    machine = host_line()
    timeouts = {"defaults-up": 120.0, "defaults-down": 420.0, "fastest": 60.0}
    api = config.new_client_from_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = f"{args.namespace_prefix}{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    print(f"namespace {ns}; signal {args.signal}; {machine}; HPA sync period {sync[0]:g} s", flush=True)
    operator = None
    try:
        if args.signal == "prometheus":
            setup = setup_gauge(apps, kubeconfig, prom, ns, image)
        else:
            setup = setup_redis_list(kubeconfig, prom, env["REDIS_URL"], ns, demo)
        print(f"signal: {setup.describe}", flush=True)
        create_deployment(apps, ns, SK, image, SLEEPER)
        create_deployment(apps, ns, KEDA, image, SLEEPER)
        watcher = Replicas(apps, ns)
        operator = start_operator(kubeconfig, prom, ns, f"bench-reaction-peer-{args.signal}-operator.log")
        apply_object(kubeconfig, ns, setup.policy)
        settings = args.settings.split(",")
        apply_object(kubeconfig, ns, scaled_object(setup.trigger, fastest=settings[0] == "fastest"))
        bench = Bench(
            kubeconfig, setup.signal, watcher, random.Random(args.seed), sync[0], started + args.budget
        )
        bench.settle(30, 120)
        if "defaults" in settings:
            print("KEDA defaults: scale-up ladder, then one scale-down step", flush=True)
            bench.run("defaults-up", LADDER, timeouts["defaults-up"])
            bench.run("defaults-down", [30], timeouts["defaults-down"])
        if "fastest" in settings:
            apply_object(kubeconfig, ns, scaled_object(setup.trigger, fastest=True))
            wait_for(
                "KEDA's HPA taking the fastest behavior",
                lambda: (
                    hpa_behavior(kubeconfig, ns).get("scaleDown", {}).get("stabilizationWindowSeconds") == 0
                ),
                60,
            )
            # Start the alternation from 30 whatever the default scale-down left.
            bench.settle(30, timeouts["defaults-down"])
            print(f"KEDA fastest: {args.steps} steps alternating 30/70", flush=True)
            bench.run("fastest", [70 if i % 2 == 0 else 30 for i in range(args.steps)], timeouts["fastest"])
        watcher.stop.set()
        report(bench, args.signal, setup, machine, sync, keda_image, timeouts)
        wall = time.time() - started
        meta = {"machine": machine, "hpa_sync": sync, "keda_image": keda_image, "wall_seconds": round(wall)}
        write_json(bench, args.signal, setup, meta, timeouts, json_path)
        plot(bench, args.signal, sync[0], png)
        print(f"wall time {wall:.0f} s")
        return 0
    finally:
        # The ScaledObject and the policy go first, while KEDA and the operator can drop their finalizers.
        wait_gone = True
        try:
            kubectl(
                kubeconfig, "-n", ns, "delete", "scaledobject", KEDA, "--ignore-not-found", "--timeout=60s"
            )
        except RuntimeError as err:
            wait_gone = False
            print(f"deleting the ScaledObject: {err}", file=sys.stderr)
        stop_operator(kubeconfig, ns, operator)
        if args.signal == "redis-list":
            deleted = delete_prefixed(redis_client(env["REDIS_URL"]), f"{ns}:")
            print(f"deleted {deleted} Redis keys of prefix {ns}:")
        core.delete_namespace(ns)
        if wait_gone:
            wait_namespace_gone(core, ns, 120)


if __name__ == "__main__":
    sys.exit(main())
