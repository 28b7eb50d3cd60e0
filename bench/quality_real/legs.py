"""The three legs on the cluster: each namespace's demo objects and autoscaler (scalekeeper's policy, KEDA's
ScaledObject, a plain HPA), the local operator and producers, the watch on its worker pods, its cleanup."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from bench.common import (
    DEMO_DIR,
    LOGS,
    demo_render,
    kubectl,
    prometheus_value,
    start_local_operator,
    start_process,
    wait_namespace_gone,
)
from bench.quality_real.records import PodLife, TaskTiming
from scalekeeper import model
from scalekeeper.metrics.promql import runtime_mean, runtime_scv

REDIS_IN_CLUSTER = "redis.scalekeeper-system.svc.cluster.local:6379"
WORKER = "worker-video"
EXPORTER = "queue-exporter"
CUSTOM_METRICS_APISERVICE = "v1beta1.custom.metrics.k8s.io"
EXTERNAL_METRICS_APISERVICE = "v1beta1.external.metrics.k8s.io"


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


def render_demo(images: dict[str, str], ns: str) -> list[dict[str, Any]]:
    """The demo objects one leg needs: its ConfigMap, worker-video (1 replica to start), the exporter."""
    keep = {
        ("ConfigMap", "demo-config"),
        ("Deployment", WORKER),
        ("Deployment", EXPORTER),
        ("Service", EXPORTER),
    }
    docs = [
        d
        for d in demo_render().render(images, key_prefix=f"{ns}:")
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
    spec: model.ScalingPolicySpec,
    raw_policy: dict[str, Any],
    queue: str,
    ns: str,
    objective_only: bool = False,
) -> dict[str, Any]:
    """The demo policy's worker for `queue`, minReplicas 1, its queries narrowed to `ns` (the three legs
    export the same queue name), nothing else of the policy; with `objective_only`, its
    targetWaitSeconds sizes alone (tasksPerWorker and drainSeconds dropped)."""
    worker = next(w for w in raw_policy["spec"]["workers"] if w["queue"] == queue)
    if objective_only:
        worker = {k: v for k, v in worker.items() if k not in ("tasksPerWorker", "drainSeconds")}
    sel = f'namespace="{ns}",queue="<queue>"'
    runtime = "celery_queue_task_runtime_seconds"
    worker = {
        **worker,
        "minReplicas": 1,
        "metrics": {
            "waiting": f"celery_queue_waiting_tasks{{{sel}}}",
            "inFlight": f"celery_queue_inflight_tasks{{{sel}}}",
            "arrivalRate": f"rate(celery_queue_published_total{{{sel}}}[1m])",
            "completionRate": f"rate(celery_queue_completed_total{{{sel}}}[1m])",
            "serviceSeconds": runtime_mean(runtime, sel),
            "serviceScv": runtime_scv(f"{runtime}_bucket{{{sel}}}"),
            "executingPerPod": f'sum by (pod) (celery_worker_executing_tasks{{namespace="{ns}"}})',
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


def worker_logged_ready(kubeconfig: str, namespace: str) -> bool:
    return " ready." in kubectl(kubeconfig, "-n", namespace, "logs", f"deploy/{WORKER}")


def prometheus_has(prom: str, query: str) -> bool:
    try:
        return prometheus_value(prom, query) is not None
    except OSError:
        return False


def start_operator(kubeconfig: str, prom: str, ns: str) -> subprocess.Popen[bytes]:
    """The operator as a local process watching only `ns`, its lease in `ns` (not in scalekeeper-system)."""
    return start_local_operator(
        kubeconfig,
        prom,
        ns,
        lease="bench-quality-real",
        lease_namespace=ns,
        identity="bench-quality-real",
        log_name="bench-quality-real-operator.log",
        extra={"SCALEKEEPER_LOG_LEVEL": "INFO", "SCALEKEEPER_LOG_FORMAT": "plain"},
        crd_if_missing=True,
    )


def start_producer(
    redis_url: str, ns: str, queue: str, schedule: Path, start_at: float, run_id: str
) -> subprocess.Popen[bytes]:
    return start_process(
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
        {**os.environ, "PYTHONPATH": str(DEMO_DIR / "app"), "KEY_PREFIX": f"{ns}:", "PYTHONUNBUFFERED": "1"},
        LOGS / f"bench-quality-real-producer-{ns}.log",
    )


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
    if not wait_namespace_gone(c.core, ns, timeout):
        print(f"namespace {ns} still terminating after {timeout:.0f} s", file=sys.stderr)
