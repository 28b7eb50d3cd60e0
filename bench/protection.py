"""bench.protection: busy-worker protection on and off, for real on the kind cluster.

Each leg runs a plain `celery worker` Deployment of the demo's app (6 pods, concurrency 1, prefetch 1, the
demo's acks_late and reject_on_worker_lost, the cluster's Redis as broker under a per-run key prefix), lets
every worker run ready for --settle s (pods ready within the same power of two of seconds are alike to the
ReplicaSet, which then picks among them by UID), sends three 60 s tasks so that 3 of the 6 pods are busy (seen
in the workers' own logs), then applies a ScalingPolicy whose decision is 3 (minReplicas 3; the 3 tasks in
flight fill 3 workers), with `protectBusyWorkers` true (leg "on") or false (leg "off"), scale-down
stabilization 0 and 100 % per period. The workers' terminationGracePeriodSeconds is Kubernetes' default, 30 s,
set explicitly: shorter than a task, so a busy worker removed is killed mid-task; kombu's visibility timeout
is 80 s, so the survivors restore its unacked task within the run. The operator and the shipped Celery
exporter are installed by the Helm chart into the run's own namespace; the legs run there one after the other,
--rounds times, each with its own queue, Deployment and policy.

What it measures, from the cluster (a pod watch) and the workers' logs (`kubectl logs -f` of every pod from
its start), never from the operator's own account: which pods were removed (busy: a task received and not
finished when its deletion began), tasks interrupted (received on a pod deleted before that task's
"succeeded in" line there), tasks redelivered (a task id received twice), seconds in termination (deletion
seen -> pod gone, per removed pod) and the time from the policy's apply to the Deployment at 3 replicas and
to 3 pods left. The counting, the table and the plot are bench.protection_figures'.

  PYTHONPATH=operator .venv/bin/python -m bench.protection      (make bench-protection)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from bench.common import (
    CACHE,
    LOGS,
    ROOT,
    apply_object,
    apply_policy_crd,
    celery_worker_deployment,
    cluster_env,
    delete_prefixed,
    describe_machine,
    kubectl,
    pushed_digest,
    redis_client,
    reproduce_command,
    run_kubectl,
    sigterm_as_interrupt,
    wait_for,
    wait_namespace_gone,
)
from bench.protection_figures import (
    LegRecord,
    leg_figures,
    leg_rows,
    plot,
    records_from_json,
    table,
    task_spans,
)
from bench.protection_watch import LogFollowers, PodWatch, prometheus_vector
from scalekeeper.cli import Parser

CHART = ROOT / "manifests" / "chart" / "scalekeeper"
HELM = str(CACHE / "bin" / "current" / "helm")
IN_CLUSTER_REDIS = "redis://redis.scalekeeper-system.svc.cluster.local:6379/0"
IN_CLUSTER_PROMETHEUS = "http://prometheus.scalekeeper-system.svc:9090"
GROUP, VERSION = "scalekeeper.dev", "v1alpha1"
LEGS = ("on", "off")

# --------------------------------------------------------------------------- the cluster


@dataclass
class Setup:
    """The run's names: its namespace (and Redis key prefix), the exporter's `app`, the chart release."""

    run_id: str
    kubeconfig: str
    prometheus: str
    redis_url: str
    core: client.CoreV1Api
    apps: client.AppsV1Api
    objects: client.CustomObjectsApi

    @property
    def namespace(self) -> str:
        return f"bench-protect-{self.run_id}"

    @property
    def prefix(self) -> str:
        return f"{self.namespace}:"

    @property
    def app(self) -> str:
        return f"protect-{self.run_id}"

    @property
    def release(self) -> str:
        return f"sk-protect-{self.run_id}"


def protected(leg: str) -> bool:
    """A leg's key is its setting and its round: on-1, off-1, on-2..."""
    return leg.split("-")[0] == "on"


def queue_of(leg: str) -> str:
    return f"slow-{leg}"


def deployment_of(leg: str) -> str:
    return f"worker-{leg}"


def project_images() -> tuple[str, str, str]:
    """The operator's, the demo's and the exporter's images, built and pushed as hack/lib.sh's app_images
    does, each by its pushed digest: their tags are reused by every build, and a node that already holds a
    tag would run its old image."""
    out = subprocess.run(
        ["bash", "-c", ". hack/lib.sh && app_images"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    if out.returncode:
        raise RuntimeError(f"app_images: {out.stderr[-3000:]}")
    refs = out.stdout.strip().splitlines()[-3:]
    pushed = [pushed_digest(ref) for ref in refs]
    operator, demo, exporter = pushed
    return operator, demo, exporter


def helm(kubeconfig: str, *args: str, check: bool = True) -> str:
    out = subprocess.run(
        [HELM, *args, "--kubeconfig", kubeconfig], capture_output=True, text=True, check=False
    )
    if check and out.returncode:
        raise RuntimeError(f"helm {' '.join(args[:2])}: {out.stderr}")
    return out.stdout


def install_chart(s: Setup, operator_image: str, exporter_image: str, legs: Sequence[str]) -> None:
    """The operator (serving only the run's namespace, under a lease of its own) and one exporter of the
    cluster's Redis under the run's key prefix, reading both legs' queues, by the chart."""
    apply_policy_crd(s.kubeconfig)  # Helm installs a chart's CRD only where none is: this checkout's
    s.core.create_namespaced_secret(
        s.namespace, {"metadata": {"name": "brokers"}, "stringData": {"redis": IN_CLUSTER_REDIS}}
    )
    op_repo, _, op_digest = operator_image.partition("@")
    ex_repo, _, ex_digest = exporter_image.partition("@")
    values = {
        "image": {"repository": op_repo, "digest": op_digest, "pullPolicy": "IfNotPresent"},
        "watchNamespaces": [s.namespace],
        "sharding": {"leaseName": s.release},
        "prometheus": {"url": IN_CLUSTER_PROMETHEUS},
        "celeryExporter": {
            "enabled": True,
            "image": {"repository": ex_repo, "digest": ex_digest},
            "brokers": [
                {
                    "name": "redis",
                    "app": s.app,
                    "brokerUrlSecret": {"name": "brokers", "key": "redis"},
                    "queues": [queue_of(leg) for leg in legs],
                    "redisKeyPrefix": s.prefix,
                }
            ],
        },
    }
    values_file = LOGS / f"{s.release}-values.yaml"
    values_file.parent.mkdir(parents=True, exist_ok=True)
    values_file.write_text(json.dumps(values))  # JSON is YAML
    helm(s.kubeconfig, "install", s.release, str(CHART), "--namespace", s.namespace, "--wait", "--timeout",
         "300s", "-f", str(values_file))  # fmt: skip


def worker_deployment(
    leg: str, image: str, s: Setup, replicas: int, task_seconds: float, grace: int, visibility: int
) -> dict[str, Any]:
    """A plain `celery worker` Deployment of the demo's app on the leg's queue (concurrency 1, prefetch 1;
    the demo's settings: acks late, reject on worker lost), tasks up to `task_seconds` long."""
    env = {
        "KEY_PREFIX": s.prefix,
        "BROKER_URL": IN_CLUSTER_REDIS,
        "MAX_TASK_SECONDS": f"{task_seconds:g}",  # the task clamps its seconds to this (30 by default)
        "VISIBILITY_TIMEOUT": str(visibility),
    }
    return celery_worker_deployment(
        deployment_of(leg),
        image,
        queue_of(leg),
        env,
        concurrency=1,
        prefetch=1,
        replicas=replicas,
        grace=grace,
    )


def scaling_policy(leg: str, s: Setup, target: int, workers: int) -> dict[str, Any]:
    """The leg's policy: its decision is `target` (minReplicas; the tasks in flight fill as many workers at
    concurrency 1 x prefetch 1, and tasksPerWorker asks for fewer), lowered at once."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScalingPolicy",
        "metadata": {"name": f"leg-{leg}"},
        "spec": {
            "intervalSeconds": 2,
            "workers": [
                {
                    "queue": queue_of(leg),
                    "deployment": deployment_of(leg),
                    "minReplicas": target,
                    "maxReplicas": workers,
                    "tasksPerWorker": workers,
                    "concurrency": 1,
                    "prefetchMultiplier": 1,
                    "protectBusyWorkers": protected(leg),
                    "metrics": {"app": s.app},
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": workers, "periodSeconds": 10}],
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 10}],
                        },
                    },
                }
            ],
        },
    }


def ready_pods(s: Setup, name: str) -> set[str]:
    pods = s.core.list_namespaced_pod(s.namespace, label_selector=f"app={name}").items
    return {
        p.metadata.name
        for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
    }


def executing(s: Setup, name: str) -> dict[str, float]:
    """Each pod's executing tasks as the exporter reports them to Prometheus."""
    query = f'celery_worker_executing_tasks{{app="{s.app}",pod=~"{name}-.*"}}'
    return {labels["pod"]: value for labels, value in prometheus_vector(s.prometheus, query)}


def operator_events(s: Setup, policy: str) -> list[str]:
    out = run_kubectl(s.kubeconfig, "-n", s.namespace, "get", "events", "--field-selector",
                      f"involvedObject.name={policy}", "-o", "json")  # fmt: skip
    if out.returncode:
        return [f"(events unreadable: {out.stderr.strip()})"]
    items = sorted(json.loads(out.stdout)["items"], key=lambda e: e.get("lastTimestamp") or "")
    return [f"{e['type']} {e['reason']}: {e['message']}" for e in items]


def run_leg(s: Setup, leg: str, demo_image: str, args: argparse.Namespace) -> LegRecord:
    name = deployment_of(leg)
    print(f"leg {leg}: {args.workers} workers of {name}, protectBusyWorkers={protected(leg)}", flush=True)
    workers = worker_deployment(
        leg, demo_image, s, args.workers, args.task_seconds, args.grace, args.visibility_timeout
    )
    apply_object(s.kubeconfig, s.namespace, workers)
    pod_watch = PodWatch(s.core, s.namespace, f"app={name}")
    logs = LogFollowers(s.kubeconfig, s.namespace, LOGS / "bench-protection" / s.run_id / leg)
    try:
        kubectl(s.kubeconfig, "-n", s.namespace, "rollout", "status", f"deploy/{name}", "--timeout=240s")
        pods = ready_pods(s, name)
        for pod in pods:
            logs.follow(pod)
        wait_for(f"{name}'s workers ready", lambda: logs.pods_logging(" ready.") == pods, 120, every=1.0)
        wait_for(
            f"the exporter to know {name}'s {len(pods)} pods",
            lambda: set(executing(s, name)) >= pods,
            120,
            every=1.0,
            retry_on=(OSError, ValueError),
        )
        # Pods ready within the same power of two of seconds are alike to the ReplicaSet (its
        # LogarithmicScaleDown): among them it picks by UID, not by which pod started last.
        readiness = [p.ready or time.time() for p in pod_watch.snapshot().values()]
        settled = max(readiness) + args.settle
        time.sleep(max(0.0, settled - time.time()))
        sent = time.time()
        kubectl(s.kubeconfig, "-n", s.namespace, "exec", f"deploy/{name}", "--", "python", "-m",
                "scalekeeper_demo.produce", "--queue", queue_of(leg), "--count", str(args.busy), "--seconds",
                f"{args.task_seconds:g}")  # fmt: skip
        wait_for(
            f"{args.busy} pods to log a task received, and the exporter to count them executing",
            lambda: (
                len(logs.pods_logging("] received")) == args.busy
                and sum(v for p, v in executing(s, name).items() if p in pods) == args.busy
            ),
            60,
            every=0.5,
            retry_on=(OSError, ValueError),
        )
        busy = logs.pods_logging("] received")
        print(f"  busy pods (from their logs): {', '.join(sorted(busy))}", flush=True)
        apply_object(s.kubeconfig, s.namespace, scaling_policy(leg, s, args.target, args.workers))
        applied = time.time()
        spec_at: float | None = None
        end = sent + args.visibility_timeout + 2 * args.task_seconds + 30
        while time.time() < end:
            if spec_at is None:
                replicas = s.apps.read_namespaced_deployment(name, s.namespace).spec.replicas
                if replicas == args.target:
                    spec_at = time.time()
            lives = pod_watch.snapshot()
            removed = [p for p in lives.values() if p.deleting is not None]
            all_gone = (
                spec_at is not None
                and len(removed) >= args.workers - args.target
                and all(p.gone is not None for p in removed)
            )
            spans = task_spans(logs.events())
            received = {sp.task for sp in spans}
            done = {sp.task for sp in spans if sp.succeeded is not None}
            if all_gone and len(received) >= args.busy and done == received:
                break
            time.sleep(0.25)
        else:
            print(f"  leg {leg}: not every task succeeded by {end - sent:.0f} s after sending", flush=True)
        time.sleep(1.0)  # the log followers' last lines
        lives = pod_watch.snapshot()
        events = logs.events()
        figures = leg_figures(lives, events, applied, spec_at)
        told = operator_events(s, f"leg-{leg}")
        return LegRecord(leg, applied, sent, spec_at, lives, events, told, figures)
    finally:
        pod_watch.stop()
        logs.stop()
        with contextlib.suppress(ApiException):
            s.objects.delete_namespaced_custom_object(
                GROUP, VERSION, s.namespace, "scalingpolicies", f"leg-{leg}"
            )
        with contextlib.suppress(ApiException):
            s.apps.delete_namespaced_deployment(name, s.namespace, propagation_policy="Background")


# --------------------------------------------------------------------------- the run


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m bench.protection", description=(__doc__ or "").split("\n")[0])
    p.add_argument("--legs", default=",".join(LEGS), help="legs to run, in order (default on,off)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of the legs, one after the other (2)")
    p.add_argument(
        "--settle", type=float, default=35.0, help="seconds every worker runs ready before the tasks (35)"
    )
    p.add_argument("--workers", type=int, default=6, help="worker pods before the scale-down (6)")
    p.add_argument("--busy", type=int, default=3, help="tasks sent, one per busy worker (3)")
    p.add_argument("--target", type=int, default=3, help="the policy's decision (3)")
    p.add_argument("--task-seconds", type=float, default=60.0, help="each task's run time (60)")
    p.add_argument(
        "--grace",
        type=int,
        default=30,
        help="workers' terminationGracePeriodSeconds (30: Kubernetes' default)",
    )
    p.add_argument(
        "--visibility-timeout",
        type=int,
        default=80,
        help="kombu's, s: when an unacked task is restored (80; above the 60 s task)",
    )
    p.add_argument("--png", type=Path, default=ROOT / "out" / "bench-protection.png")
    p.add_argument("--json", type=Path, default=ROOT / "out" / "bench-protection.json")
    p.add_argument("--replot", type=Path, help="no run: the table and the plot again from a run's --json")
    return p


@contextlib.contextmanager
def run_namespace(s: Setup) -> Iterator[None]:
    """The run's namespace; at the end its policies, the release, the namespace and its Redis keys go."""
    s.core.create_namespace(
        {"metadata": {"name": s.namespace, "labels": {"scalekeeper-bench": "protection"}}}
    )
    try:
        yield
    finally:
        with contextlib.suppress(ApiException):
            for item in s.objects.list_namespaced_custom_object(
                GROUP, VERSION, s.namespace, "scalingpolicies"
            )["items"]:
                s.objects.delete_namespaced_custom_object(
                    GROUP, VERSION, s.namespace, "scalingpolicies", item["metadata"]["name"]
                )
        helm(s.kubeconfig, "uninstall", s.release, "--namespace", s.namespace, "--wait", check=False)
        s.core.delete_namespace(s.namespace, propagation_policy="Background")
        if not wait_namespace_gone(s.core, s.namespace, 180):
            print(f"namespace {s.namespace} still there after 180 s", file=sys.stderr)
        with contextlib.suppress(Exception):
            delete_prefixed(redis_client(s.redis_url), s.prefix)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    legs = [leg for leg in args.legs.split(",") if leg]
    if any(leg not in LEGS for leg in legs):
        raise SystemExit(f"--legs: each of {', '.join(LEGS)}")
    if args.replot is not None:
        replayed = records_from_json(json.loads(args.replot.read_text()))
        print(table(leg_rows(replayed)))
        plot(replayed, args.png, args.grace)
        print(f"plot: {args.png}")
        return 0
    env = cluster_env()
    kubeconfig = env["KUBECONFIG"]
    api = config.new_client_from_config(config_file=kubeconfig)
    s = Setup(
        uuid.uuid4().hex[:6],
        kubeconfig,
        env["PROMETHEUS_URL"],
        env["REDIS_URL"],
        client.CoreV1Api(api),
        client.AppsV1Api(api),
        client.CustomObjectsApi(api),
    )
    started = time.time()
    print(f"machine: {describe_machine(api)}", flush=True)
    operator_image, demo_image, exporter_image = project_images()
    print(f"images: {operator_image}, {demo_image}, {exporter_image}", flush=True)
    records: list[LegRecord] = []
    with sigterm_as_interrupt(), run_namespace(s):
        keys = [f"{leg}-{r + 1}" for r in range(args.rounds) for leg in legs]
        install_chart(s, operator_image, exporter_image, keys)
        print(
            f"namespace {s.namespace}: operator and exporter installed by the chart (app {s.app})", flush=True
        )
        for key in keys:
            rec = run_leg(s, key, demo_image, args)
            records.append(rec)
            print(f"  operator's events: {'; '.join(rec.operator_events) or 'none'}", flush=True)
    print(
        f"\n{args.workers} workers (concurrency 1, prefetch 1, the demo's acks_late and "
        "reject_on_worker_lost), "
        f"{args.busy} tasks of {args.task_seconds:g} s, policy decision {args.target}; "
        f"terminationGracePeriodSeconds {args.grace}, visibility_timeout {args.visibility_timeout} s"
    )
    print(table(leg_rows(records)))
    print(f"wall time {time.time() - started:.0f} s")
    print(f"reproduce: {reproduce_command('bench.protection', args)}")
    plot(records, args.png, args.grace)
    print(f"plot: {args.png}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps([asdict(r) for r in records], indent=1, default=str))
    print(f"records: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
