"""A Celery application that knows nothing of scalekeeper, sized through the chart: one helm release installs
the operator and the shipped Celery exporter (`celeryExporter`, one exporter per broker); the app has one
queue on the cluster's Redis and one on its RabbitMQ; its ScalingPolicy writes no query, so the default
queries read the exporter by the policy's name (the exporters' `app`) and the queue.

The app is the demo's Celery code (stock settings plus events: task events from the workers, task-sent from
the producer), run with plain `celery worker` commands; the operator released here serves only this module's
namespace (`celery-*`, which the session's shared operator does not serve), under a lease of its own.
"""

from __future__ import annotations

import re
import subprocess
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
import yaml
from kubernetes import client

from bench.common import celery_worker_deployment

from .conftest import ROOT, Cluster, kubectl, release_policies, tool_env
from .kube_helpers import apply_policy, condition, events_for, policy_status, replicas_of, target
from .operator_fixture import install_crd, pod_metrics_text
from .test_chart_lifecycle import helm
from .test_demo_scaling import built_image, fast_rules
from .test_operator_basics import prometheus_value
from .test_rabbitmq_addon import credentials
from .waiting import metric_sum, wait_cycles, wait_for

pytestmark = pytest.mark.cluster
CHART = ROOT / "manifests" / "chart" / "scalekeeper"
# The policy's name, and the `app` both exporters label their series with: one per run, so that series an
# earlier run left in Prometheus (a runtime histogram read over 5 minutes) are not read as this run's.
APP = f"shop-{uuid.uuid4().hex[:6]}"
REDIS_QUEUE, RABBIT_QUEUE = "mail", "video"
SLOW_QUEUE = "slow"  # long tasks on Redis: busy-worker protection and the wait objective
REDIS_BROKER = "redis://redis.scalekeeper-system.svc.cluster.local:6379/0"
RABBIT_HOST = "rabbitmq.scalekeeper-system.svc.cluster.local"


@dataclass
class ReleasedOperator:
    """The operator of this module's release: its one pod's /metrics, through the API server's pod proxy."""

    cluster: Cluster
    namespace: str
    release: str

    def metrics_text(self) -> str:
        (pod,) = [
            p.metadata.name
            for p in client.CoreV1Api(self.cluster.api)
            .list_namespaced_pod(
                self.namespace,
                label_selector=f"app.kubernetes.io/instance={self.release},app.kubernetes.io/name=scalekeeper",
            )
            .items
            if p.metadata.deletion_timestamp is None
        ]
        return pod_metrics_text(self.cluster, self.namespace, pod)


@dataclass
class CeleryApp:
    namespace: str
    operator: ReleasedOperator
    prefix: str  # the Redis queue's kombu global_keyprefix, so the shared Redis holds no other run's keys
    image: str  # the demo's, which every worker runs


def rabbitmq_url(cluster: Cluster) -> str:
    user, password = credentials(cluster)
    return f"amqp://{urllib.parse.quote(user)}:{urllib.parse.quote(password)}@{RABBIT_HOST}:5672//"


@pytest.fixture(scope="module")
def app(cluster: Cluster) -> Iterator[CeleryApp]:
    # Helm installs a chart's CRD only where none is: the one of this checkout, as an upgrade would apply it.
    install_crd(cluster)
    ns = f"celery-{uuid.uuid4().hex[:6]}"
    prefix = f"{ns}:"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": ns, "labels": {"scalekeeper-test": "1"}}})
    release = f"sk-{ns}"
    demo_image = built_image("demo-image.sh")
    exporter_image = built_image("exporter-image.sh")
    amqp = rabbitmq_url(cluster)
    core.create_namespaced_secret(
        ns, {"metadata": {"name": "brokers"}, "stringData": {"redis": REDIS_BROKER, "rabbitmq": amqp}}
    )
    workers = [
        celery_worker_deployment(
            f"worker-{REDIS_QUEUE}",
            demo_image,
            REDIS_QUEUE,
            {"BROKER_URL": REDIS_BROKER, "KEY_PREFIX": prefix},
            concurrency=1,
            prefetch=1,
        ),
        # Bookkeeping (the demo's task records its completions) stays in Redis; the queue is RabbitMQ's.
        celery_worker_deployment(
            f"worker-{RABBIT_QUEUE}",
            demo_image,
            RABBIT_QUEUE,
            {"BROKER_URL": amqp, "DEMO_REDIS_URL": REDIS_BROKER, "KEY_PREFIX": prefix},
            concurrency=1,
            prefetch=4,
        ),
        # Four idle workers until test_a_protected_scale_down... gives two of them a task; started here so
        # the exporter knows which queue they consume by then.
        celery_worker_deployment(
            f"worker-{SLOW_QUEUE}",
            demo_image,
            SLOW_QUEUE,
            {"BROKER_URL": REDIS_BROKER, "KEY_PREFIX": prefix},
            concurrency=1,
            prefetch=1,
            replicas=4,
        ),
    ]
    kubectl(cluster, "-n", ns, "apply", "-f", "-", stdin=yaml.safe_dump_all(workers))
    exporter_repo, _, exporter_digest = exporter_image.partition("@")
    operator_repo, _, operator_tag = cluster.operator_image.rpartition(":")
    values = {
        "image": {"repository": operator_repo, "tag": operator_tag, "pullPolicy": "Always"},
        "watchNamespaces": [ns],
        "sharding": {"leaseName": release},
        "prometheus": {"url": "http://prometheus.scalekeeper-system.svc:9090"},
        "celeryExporter": {
            "enabled": True,
            "image": {"repository": exporter_repo, "digest": exporter_digest},
            "brokers": [
                {
                    "name": "redis",
                    "app": APP,
                    "brokerUrlSecret": {"name": "brokers", "key": "redis"},
                    "queues": [REDIS_QUEUE, SLOW_QUEUE],
                    "redisKeyPrefix": prefix,
                },
                {
                    "name": "rabbitmq",
                    "app": APP,
                    "brokerUrlSecret": {"name": "brokers", "key": "rabbitmq"},
                    "queues": [RABBIT_QUEUE],
                },
            ],
        },
    }
    values_file = ROOT / "logs" / f"{release}-values.yaml"
    values_file.parent.mkdir(exist_ok=True)
    values_file.write_text(yaml.safe_dump(values))
    helm(
        cluster,
        "install",
        release,
        str(CHART),
        "--namespace",
        ns,
        "--wait",
        "--timeout",
        "300s",
        "-f",
        str(values_file),
    )
    for name in (f"worker-{REDIS_QUEUE}", f"worker-{RABBIT_QUEUE}", f"worker-{SLOW_QUEUE}"):
        kubectl(cluster, "-n", ns, "rollout", "status", f"deploy/{name}", "--timeout=180s")
    try:
        yield CeleryApp(ns, ReleasedOperator(cluster, ns, release), prefix, demo_image)
    finally:
        release_policies(cluster, ns)
        helm(cluster, "uninstall", release, "--namespace", ns, "--wait", check=False)
        core.delete_namespace(ns, propagation_policy="Background")
        r = redis.Redis.from_url(cluster.redis_url)
        keys = list(r.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            r.delete(*keys)


def producer(app: CeleryApp, queue: str, *args: str) -> list[str]:
    """kubectl arguments sending tasks from inside the queue's worker pod (its broker settings), by the
    demo's producer."""
    return [
        *("-n", app.namespace, "exec", f"deploy/worker-{queue}", "--"),
        *("python", "-m", "scalekeeper_demo.produce", "--queue", queue, *args),
    ]


@pytest.fixture(scope="module")
def policy(cluster: Cluster, app: CeleryApp) -> str:
    """The app's policy: no query anywhere, so every input comes from the default queries. Up at once, down
    only after the module is over (a 600 s window), so every replica count a test reads is a scale-up's."""
    spec = {
        "intervalSeconds": 2,
        "workers": [
            {
                "queue": REDIS_QUEUE,
                "deployment": f"worker-{REDIS_QUEUE}",
                "minReplicas": 1,
                "maxReplicas": 3,
                "tasksPerWorker": 5,
                "drainSeconds": 20,
                "concurrency": 1,
                "prefetchMultiplier": 1,
                "behavior": fast_rules(up_pods=3, down_window=600),
            },
            {
                "queue": RABBIT_QUEUE,
                "deployment": f"worker-{RABBIT_QUEUE}",
                "minReplicas": 1,
                "maxReplicas": 3,
                "tasksPerWorker": 2,
                "concurrency": 1,
                "prefetchMultiplier": 4,
                "behavior": fast_rules(up_pods=3, down_window=600),
            },
        ],
    }
    apply_policy(cluster, app.namespace, APP, spec)
    # The RabbitMQ queue's inputs are there at once; the Redis queue's rates only once tasks were sent (no
    # arrivals cannot be told from producers that send no task-sent event: missing until the first one).
    wait_for(
        "a decision from the RabbitMQ queue's load",
        lambda: "load" in worker_metrics(cluster, app, RABBIT_QUEUE),
        timeout=120,
    )
    return APP


def worker_metrics(cluster: Cluster, app: CeleryApp, queue: str) -> dict[str, float]:
    found = target(policy_status(cluster, app.namespace, APP), f"worker/{queue}")
    return dict(found.get("metrics") or {}) if found else {}


def video_status(cluster: Cluster, app: CeleryApp) -> dict[str, Any] | None:
    return target(policy_status(cluster, app.namespace, APP), f"worker/{RABBIT_QUEUE}")


def series(cluster: Cluster, name: str, queue: str) -> float | None:
    found = prometheus_value(cluster, f'{name}{{app="{APP}",queue="{queue}"}}')
    return float(found[0]["value"][1]) if len(found) == 1 else None


def test_tasks_prefetched_by_a_busy_rabbitmq_worker_count_as_load(
    cluster: Cluster, app: CeleryApp, policy: str
) -> None:
    # One worker, concurrency 1, prefetch 4: of six long tasks it runs one and holds three more, unacked;
    # two stay ready. A queue-length reading (RabbitMQ's ready messages, which KEDA reads by AMQP) sees 2.
    kubectl(cluster, *producer(app, RABBIT_QUEUE, "--count", "6", "--seconds", "30"))
    wait_for(
        "RabbitMQ's 2 ready and 4 unacked messages, read through the exporter",
        lambda: (
            series(cluster, "celery_queue_waiting_tasks", RABBIT_QUEUE) == 2
            and series(cluster, "celery_queue_prefetched_tasks", RABBIT_QUEUE) == 4
        ),
        timeout=60,
    )
    # The operator sizes on all six: ceil(6 / tasksPerWorker 2) = 3.
    seen = wait_for(
        "the policy to read a load of 6 on the RabbitMQ queue",
        lambda: (m := worker_metrics(cluster, app, RABBIT_QUEUE)).get("load") == 6 and m,
        timeout=60,
    )
    assert seen["in_flight"] >= 4, seen
    wait_for(
        "3 RabbitMQ workers", lambda: replicas_of(cluster, app.namespace, f"worker-{RABBIT_QUEUE}") == 3, 60
    )


def test_a_rabbitmq_restart_holds_the_workers_and_they_recover(
    cluster: Cluster, app: CeleryApp, policy: str
) -> None:
    name = f"worker-{RABBIT_QUEUE}"
    before = replicas_of(cluster, app.namespace, name)
    kubectl(cluster, "-n", "scalekeeper-system", "delete", "pod", "-l", "app=rabbitmq", "--wait=false")
    blind = wait_for(
        "the RabbitMQ queue's inputs to go missing",
        lambda: (t := video_status(cluster, app)) and t.get("limitedBy") == "missingMetric" and t,
        timeout=60,
    )
    assert RABBIT_QUEUE in blind["reason"], blind
    # Missing data scales nothing: the workers stay as they were for as long as the broker is away.
    wait_cycles(
        app.operator,
        3,
        holds=lambda: replicas_of(cluster, app.namespace, name) == before,
        what=f"{name} held at {before} while RabbitMQ was away",
    )
    kubectl(cluster, "-n", "scalekeeper-system", "rollout", "status", "deploy/rabbitmq", "--timeout=180s")
    back = wait_for(
        "the RabbitMQ queue's inputs back",
        lambda: (t := video_status(cluster, app)) and t.get("limitedBy") != "missingMetric" and t,
        timeout=180,
    )
    assert "load" in back["metrics"], back


def test_redis_workers_drain_by_the_arrival_and_completion_rates_of_celery_events(
    cluster: Cluster, app: CeleryApp, policy: str
) -> None:
    # 3 tasks/s of 1 s for 100 s against one worker that completes 1/s: the backlog grows, the load sizes
    # the workers up first, and once it has lasted a rate window (1 min) the drain estimate reads the
    # event-derived arrival and completion rates.
    sending = subprocess.Popen(
        [
            *("kubectl", "--kubeconfig", cluster.kubeconfig),
            *producer(app, REDIS_QUEUE, "--count", "300", "--rate", "3", "--seconds", "1"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=tool_env(),
    )  # fmt: skip
    try:
        wait_for(
            "3 Redis workers", lambda: replicas_of(cluster, app.namespace, f"worker-{REDIS_QUEUE}") == 3, 60
        )
        seen = wait_for(
            "the drain estimate from event rates",
            lambda: "per_worker_rate" in (m := worker_metrics(cluster, app, REDIS_QUEUE)) and m,
            timeout=120,
        )
        # Arrivals as Celery's task-sent events count them: 3/s sent, read lower while the rate's 1 min
        # window still holds the time before the producer started. Completions per worker at most 1/s.
        assert 1.0 <= seen["arrival_rate"] <= 4.0, seen
        assert 0 < seen["per_worker_rate"] <= 1.2, seen
        status = target(policy_status(cluster, app.namespace, APP), f"worker/{REDIS_QUEUE}")
        assert status is not None and "draining in 20s" in status["reason"], status
        assert metric_sum(app.operator.metrics_text(), "scalekeeper_policies") == 1
    finally:
        sending.kill()
        sending.wait(10)
    assert condition(policy_status(cluster, app.namespace, APP), "MetricsAvailable")["status"] == "True"


def pod_names(cluster: Cluster, namespace: str, app_label: str) -> set[str]:
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(namespace, label_selector=f"app={app_label}")
    return {p.metadata.name for p in pods.items if p.metadata.deletion_timestamp is None}


def pods_logging(cluster: Cluster, namespace: str, pods: set[str], text: str) -> set[str]:
    """The pods whose Celery log holds `text` (read from each pod's log, not from any metric)."""
    core = client.CoreV1Api(cluster.api)
    return {p for p in pods if text in core.read_namespaced_pod_log(p, namespace, container="worker")}


def explained(cluster: Cluster, namespace: str, policy: str, queue: str) -> str:
    """A policy's worker status and Events, for a failure message."""
    status = target(policy_status(cluster, namespace, policy), f"worker/{queue}")
    told = [(e.reason, e.message) for e in events_for(cluster, namespace, policy)]
    return f"status {status}; events {told}"


def test_a_protected_scale_down_removes_idle_workers_then_the_objective_sizes_a_scale_up(
    cluster: Cluster, app: CeleryApp, policy: str
) -> None:
    name, ns = f"worker-{SLOW_QUEUE}", app.namespace
    pods = pod_names(cluster, ns, name)
    assert len(pods) == 4, pods
    # The exporter exports the runtime histogram once it has heard a whole rate window (60 s). Born after
    # the two tasks below finished, the series would start at their count, and no rate of it would show a
    # runtime when the scale-up at the end needs one (this test alone, right after the app's start).
    wait_for(
        "the exporter's runtime series of the slow queue",
        lambda: series(cluster, "celery_queue_task_runtime_seconds_count", SLOW_QUEUE) is not None,
        timeout=90,
    )
    # Two 30 s tasks on two of the four workers, before any policy sizes them.
    kubectl(cluster, *producer(app, SLOW_QUEUE, "--count", "2", "--seconds", "30"))
    wait_for(
        "the exporter to count both tasks in flight, and the workers' heartbeats both executing",
        lambda: series(cluster, "celery_queue_inflight_tasks", SLOW_QUEUE) == 2
        and sum(float(s["value"][1]) for s in prometheus_value(
            cluster, f'celery_worker_executing_tasks{{app="{APP}",pod=~"{name}-.*"}}'
        )) == 2,
        timeout=30,
    )  # fmt: skip
    busy = pods_logging(cluster, ns, pods, "] received")  # from the workers' own logs, not from a metric
    assert 1 <= len(busy) <= 2, busy
    # The policy: the two tasks in flight fill two workers; the others are idle and must go first.
    spec = {
        "intervalSeconds": 2,
        "workers": [
            {
                "queue": SLOW_QUEUE,
                "deployment": name,
                "minReplicas": 1,
                "maxReplicas": 8,
                "targetWaitSeconds": 20,
                "concurrency": 1,
                "prefetchMultiplier": 1,
                "metrics": {"app": APP},
                "behavior": fast_rules(up_pods=8, down_window=0)
                | {
                    "scaleDown": {
                        "stabilizationWindowSeconds": 0,
                        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 10}],
                    }
                },
            }
        ],
    }
    apply_policy(cluster, ns, "slow", spec)
    try:
        wait_for("2 slow workers", lambda: replicas_of(cluster, ns, name) == 2, timeout=60)
        left = wait_for("2 worker pods", lambda: len(p := pod_names(cluster, ns, name)) == 2 and p, 60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {explained(cluster, ns, 'slow', SLOW_QUEUE)}") from exc
    reasons = {e.reason: e.message for e in events_for(cluster, ns, "slow")}
    assert busy <= left, f"busy {sorted(busy)}, left {sorted(left)}, events {reasons}"
    assert "ProtectingBusyWorkers" in reasons and "ScaleDownUnprotected" not in reasons, reasons
    assert condition(policy_status(cluster, ns, "slow"), "BusyWorkersProtected")["status"] == "True"
    # No task was interrupted: each finished on the pod that received it.
    wait_for(
        "both tasks to succeed where they started",
        lambda: len(pods_logging(cluster, ns, busy, "succeeded in")) == len(busy),
        timeout=45,
    )

    # A runtime is read now (30 s tasks): the next scale-up is the objective's.
    kubectl(cluster, *producer(app, SLOW_QUEUE, "--count", "4", "--seconds", "30"))

    def objective_scale_up() -> str | None:
        for e in events_for(cluster, ns, "slow"):
            if e.reason == "Scaled" and re.match(r"Scaled worker/slow [12] -> ", e.message):
                return str(e.message)
        return None

    try:
        scaled = wait_for("a scale-up", objective_scale_up, timeout=60)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; {explained(cluster, ns, 'slow', SLOW_QUEUE)}") from exc
    match = re.search(
        r"-> (\d+): .*p95 wait 20s at [\d.e+-]+ tasks/s, ([\d.]+)s runtime .* needs (\d+)", scaled
    )
    assert match is not None, scaled
    assert 29 <= float(match.group(2)) <= 31, scaled  # the 30 s runtime, read from the exporter's histogram
    assert int(match.group(1)) == int(match.group(3)), scaled
