"""The demo application scaled by the operator, end to end: real Prometheus, real Redis, real Celery.

One namespace holds the demo for the module. The policy is the example's, with windows shortened so the
scale-down half of each story fits in a test, and its queries narrowed to this namespace (the cluster's
Prometheus and Redis are shared by every test).
"""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from kubernetes import client

from bench.common import pushed_digest

from .conftest import ROOT, Cluster, kubectl, release_policies
from .kube_helpers import (
    GROUP,
    PLURAL,
    VERSION,
    apply_policy,
    condition,
    events_for,
    policy_status,
    replicas_of,
    target,
    wait_condition,
)
from .operator_fixture import RunningOperator
from .waiting import wait_cycles, wait_deleted, wait_for

pytestmark = pytest.mark.cluster
DEMO = ROOT / "manifests" / "examples" / "demo"


def _render() -> Any:
    spec = importlib.util.spec_from_file_location("demo_render", DEMO / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render


def built_image(script: str) -> str:
    """The image a hack/*-image.sh script built and pushed, by digest: its tag is reused by every build, and a
    node that already holds the tag would run the old image."""
    out = subprocess.run([str(ROOT / "hack" / script)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return pushed_digest(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def demo_images(cluster: Cluster) -> dict[str, str]:
    return {
        "DEMO_IMAGE": built_image("demo-image.sh"),
        "EXPORTER_IMAGE": built_image("exporter-image.sh"),
        "REDIS_IMAGE": cluster.images["REDIS_IMAGE"],
    }


@pytest.fixture(scope="module")
def demo(cluster: Cluster, demo_images: dict[str, str]) -> Iterator[str]:
    ns = f"demo-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": ns, "labels": {"scalekeeper-test": "1"}}})
    objects = _render()(demo_images, key_prefix=f"{ns}:")
    import yaml

    kubectl(cluster, "-n", ns, "apply", "-f", "-", stdin=yaml.safe_dump_all(objects))
    for kind, name in (
        ("deploy", "web"),
        ("deploy", "worker-video"),
        ("deploy", "worker-emails"),
        ("deploy", "worker-reports"),
        ("deploy", "queue-exporter"),
        ("statefulset", "db-replica"),
    ):
        kubectl(cluster, "-n", ns, "rollout", "status", f"{kind}/{name}", "--timeout=240s")
    try:
        yield ns
    finally:
        release_policies(cluster, ns)
        core.delete_namespace(ns, propagation_policy="Background")


def fast_rules(up_pods: int, down_window: int) -> dict[str, Any]:
    return {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": up_pods, "periodSeconds": 10}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": down_window,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 10}],
        },
    }


def worker(ns: str, queue: str, **extra: Any) -> dict[str, Any]:
    sel = f'queue="{queue}",namespace="{ns}"'
    spec = {
        "queue": queue,
        "deployment": f"worker-{queue}",
        "minReplicas": 1,
        "maxReplicas": 4,
        "tasksPerWorker": 4,
        "concurrency": 2,
        "prefetchMultiplier": 1,
        "metrics": {
            "waiting": f"celery_queue_waiting_tasks{{{sel}}}",
            "inFlight": f"celery_queue_inflight_tasks{{{sel}}}",
            "arrivalRate": f"rate(celery_queue_published_total{{{sel}}}[1m])",
            "completionRate": f"rate(celery_queue_completed_total{{{sel}}}[1m])",
        },
        "behavior": fast_rules(up_pods=3, down_window=20),
    }
    spec.update(extra)
    return spec


def broker(cluster: Cluster) -> redis.Redis:
    return redis.Redis.from_url(cluster.redis_url, decode_responses=True)


def exec_in_web(cluster: Cluster, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return kubectl(cluster, "-n", ns, "exec", "deploy/web", "--", *args)


def test_video_workers_scale_with_the_backlog_and_every_task_completes_once(
    cluster: Cluster, demo: str, running_operator: RunningOperator
) -> None:
    ns = demo
    policy = {
        "intervalSeconds": 2,
        "workers": [worker(ns, "video"), worker(ns, "emails"), worker(ns, "reports")],
    }
    apply_policy(cluster, ns, "demo-workers", policy)
    wait_for(
        "a first decision",
        lambda: target(policy_status(cluster, ns, "demo-workers"), "worker/video"),
        timeout=60,
    )

    tasks = 160
    exec_in_web(
        cluster,
        ns,
        "python",
        "-m",
        "scalekeeper_demo.produce",
        "--queue",
        "video",
        "--count",
        str(tasks),
        "--rate",
        "40",
        "--seconds",
        "1",
        "--run-id",
        "e2e",
    )
    peak = wait_for(
        "video workers to scale up to 4",
        lambda: (n := replicas_of(cluster, ns, "worker-video")) >= 4 and n,
        timeout=90,
    )
    assert peak <= 4  # maxReplicas
    assert replicas_of(cluster, ns, "worker-emails") == 1
    assert replicas_of(cluster, ns, "worker-reports") == 1
    scaled = [e.message for e in events_for(cluster, ns, "demo-workers") if e.reason == "Scaled"]
    assert any(m.startswith("Scaled worker/video 1 -> ") for m in scaled), scaled

    r = broker(cluster)
    prefix = f"{ns}:"
    wait_for(
        f"all {tasks} video tasks to complete",
        lambda: r.scard(f"{prefix}demo:completed:video") >= tasks,
        timeout=240,
        interval=2,
    )
    # Back down once the backlog is gone, through the scale-down window, while tasks may still be running.
    wait_for(
        "video workers back at 1",
        lambda: replicas_of(cluster, ns, "worker-video") == 1,
        timeout=180,
        interval=2,
    )
    # Held at 1 for two cycles more, and nothing left that could run a task again: no message waiting or
    # delivered (kombu's `video` list and `unacked` hash), none running, no worker pod shutting down.
    wait_cycles(
        running_operator, 2, lambda: replicas_of(cluster, ns, "worker-video") == 1, "video workers at 1"
    )
    core = client.CoreV1Api(cluster.api)
    wait_for(
        "the broker drained and the scaled-down workers gone",
        lambda: (
            r.llen(f"{prefix}video") == 0
            and r.hlen(f"{prefix}unacked") == 0
            and int(r.get(f"{prefix}demo:started:video") or 0)
            == int(r.get(f"{prefix}demo:completions:video") or 0)
            and len(core.list_namespaced_pod(ns, label_selector="app=worker-video").items) == 1
        ),
        timeout=90,
    )
    assert r.scard(f"{prefix}demo:published:video") == tasks
    assert r.scard(f"{prefix}demo:completed:video") == tasks
    assert int(r.get(f"{prefix}demo:completions:video") or 0) == tasks  # none ran twice
    status = policy_status(cluster, ns, "demo-workers")
    assert target(status, "worker/video")["desiredReplicas"] == 1  # type: ignore[index]
    client.CustomObjectsApi(cluster.api).delete_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "demo-workers"
    )


def test_request_and_read_load_raise_the_web_floor_and_the_read_replicas(
    cluster: Cluster, demo: str, running_operator: RunningOperator
) -> None:
    ns = demo
    hpas = client.AutoscalingV2Api(cluster.api)
    policy = {
        "intervalSeconds": 2,
        "web": {
            "deployment": "web",
            "minReplicas": 1,
            "maxReplicas": 4,
            "cpuUtilization": 95,
            "requestRate": {
                "query": f'sum(rate(demo_http_requests_total{{namespace="{ns}"}}[20s]))',
                "perReplica": 10,
            },
            "behavior": fast_rules(up_pods=4, down_window=20),
        },
        "readReplicas": {
            "target": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db-replica"},
            "minReplicas": 1,
            "maxReplicas": 3,
            "floor": 2,
            "metric": {"query": f'sum(rate(demo_db_reads_total{{namespace="{ns}"}}[20s]))', "perReplica": 12},
            "behavior": fast_rules(up_pods=2, down_window=20),
        },
    }
    apply_policy(cluster, ns, "demo-web", policy)
    hpa = wait_for(
        "the owned HPA",
        lambda: hpas.read_namespaced_horizontal_pod_autoscaler("demo-web-web", ns),
        timeout=60,
    )
    assert hpa.spec.min_replicas == 1
    apps = client.AppsV1Api(cluster.api)
    generation = apps.read_namespaced_deployment("web", ns).metadata.generation
    # The floor bounds scale-down only (minReplicas bounds everything): without load the tier stays at 1.
    assert (
        client.AppsV1Api(cluster.api).read_namespaced_stateful_set_scale("db-replica", ns).spec.replicas == 1
    )

    load = threading.Thread(
        target=exec_in_web,
        args=(
            cluster,
            ns,
            "python",
            "-m",
            "scalekeeper_demo.load",
            "--url",
            "http://web/?ms=2",
            "--rate",
            "35",
            "--duration",
            "75",
        ),
        daemon=True,
    )
    load.start()
    wait_for(
        "the HPA floor to rise to 4",
        lambda: hpas.read_namespaced_horizontal_pod_autoscaler("demo-web-web", ns).spec.min_replicas == 4,
        timeout=90,
        interval=2,
    )
    wait_for("web to grow to 4", lambda: replicas_of(cluster, ns, "web") == 4, timeout=60, interval=2)
    # The operator raised the Deployment itself, one write per floor rise (each spec write bumps the
    # Deployment's generation; each rise is one Scaled Event), under its replica's own field manager, and the
    # HPA controller (kube-controller-manager) never had to.
    messages = [e.message for e in events_for(cluster, ns, "demo-web") if e.reason == "Scaled"]
    assert any("web floor" in m and "request rate" in m for m in messages), messages
    rises = sum("web floor" in m for m in messages)
    deployment = apps.read_namespaced_deployment("web", ns)
    assert deployment.metadata.generation - generation == rises, (rises, messages, deployment.metadata)
    scalers = {f.manager for f in deployment.metadata.managed_fields if f.subresource == "scale"}
    assert len(scalers) == 1 and scalers.pop().startswith("scalekeeper-"), scalers
    wait_for(
        "read replicas to rise to 3",
        lambda: (
            client.AppsV1Api(cluster.api).read_namespaced_stateful_set_scale("db-replica", ns).spec.replicas
            == 3
        ),
        timeout=60,
        interval=2,
    )
    load.join(timeout=120)

    # After the load: the floor comes down one pod per 10 s after a 20 s window, and reads back to the floor.
    floors: list[int] = []

    def floor_back_to_one() -> bool:
        floors.append(hpas.read_namespaced_horizontal_pod_autoscaler("demo-web-web", ns).spec.min_replicas)
        return floors[-1] == 1

    wait_for("the HPA floor back to 1", floor_back_to_one, timeout=150, interval=1)
    steps = [a - b for a, b in itertools.pairwise(floors) if a != b]
    assert all(step == 1 for step in steps), floors  # never faster than 1 pod per period
    wait_for(
        "read replicas back to the floor of 2",
        lambda: (
            client.AppsV1Api(cluster.api).read_namespaced_stateful_set_scale("db-replica", ns).spec.replicas
            == 2
        ),
        timeout=120,
        interval=2,
    )

    # Deleting the policy removes the HPA it owned and leaves the workloads at their size.
    before = replicas_of(cluster, ns, "web")
    client.CustomObjectsApi(cluster.api).delete_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "demo-web"
    )

    wait_deleted(
        "the owned HPA to be deleted with the policy",
        lambda: hpas.read_namespaced_horizontal_pod_autoscaler("demo-web-web", ns),
    )
    assert replicas_of(cluster, ns, "web") == before
    assert (
        client.AppsV1Api(cluster.api).read_namespaced_stateful_set_scale("db-replica", ns).spec.replicas == 2
    )


def _set_broker_replicas(cluster: Cluster, replicas: int) -> None:
    client.AppsV1Api(cluster.api).patch_namespaced_deployment_scale(
        "redis", "scalekeeper-system", {"spec": {"replicas": replicas}}
    )


def _exporter_story(cluster: Cluster, ns: str) -> str:
    """The policy's MetricsAvailable condition, the demo exporter's video series and log, and the video
    workers' logs, for a failure's message: the namespace, and with it these logs, goes with the test."""
    cond = condition(policy_status(cluster, ns, "demo-broker"), "MetricsAvailable")
    scrape = kubectl(
        cluster,
        "get",
        "--raw",
        f"/api/v1/namespaces/{ns}/services/queue-exporter:9808/proxy/metrics",
        check=False,
    )
    series = [
        line for line in scrape.stdout.splitlines() if "video" in line or "scalekeeper_exporter" in line
    ]
    log = kubectl(cluster, "-n", ns, "logs", "deploy/queue-exporter", "--tail=80", check=False)
    workers = kubectl(
        cluster, "-n", ns, "logs", "-l", "app=worker-video", "--prefix", "--tail=8", check=False
    )
    return (
        f"MetricsAvailable: {cond}\nexporter series (video, its own):\n"
        + "\n".join(series or [scrape.stderr.strip()])
        + f"\nexporter log (last 80 lines):\n{log.stdout}{log.stderr}"
        + f"\nvideo workers' logs (last 8 lines each):\n{workers.stdout}{workers.stderr}"
    )


def test_broker_restart_holds_the_workers_blind_then_recovers(
    cluster: Cluster, demo: str, running_operator: RunningOperator
) -> None:
    """Redis (the broker, shared by the cluster) goes away with a backlog in it: the queue series vanish,
    the operator holds the workers where they are and says why, then sizes again once Redis is back."""
    ns = demo
    core = client.CoreV1Api(cluster.api)
    apply_policy(cluster, ns, "demo-broker", {"intervalSeconds": 2, "workers": [worker(ns, "video")]})
    try:
        exec_in_web(
            cluster,
            ns,
            *("python", "-m", "scalekeeper_demo.produce", "--queue", "video", "--count", "400"),
            *("--rate", "0", "--seconds", "2", "--run-id", "broker"),
        )
        wait_for("video workers at 4", lambda: replicas_of(cluster, ns, "worker-video") == 4, timeout=90)

        _set_broker_replicas(cluster, 0)
        # Out of the Service as soon as it is terminating (the pod itself may take a while to go).
        wait_for(
            "the broker pod to be terminating",
            lambda: all(
                p.metadata.deletion_timestamp is not None
                for p in core.list_namespaced_pod("scalekeeper-system", label_selector="app=redis").items
            ),
            timeout=60,
        )
        blind = wait_condition(cluster, ns, "demo-broker", "MetricsAvailable", "False", timeout=60)
        assert "worker/video" in blind["message"], blind
        # Blind is not idle: an empty reading must not pass for an empty queue. Cycles past the scale-down
        # window, and one more to take the step it would allow.
        window = worker(ns, "video")["behavior"]["scaleDown"]["stabilizationWindowSeconds"]
        wait_cycles(
            running_operator,
            window // 2 + 2,  # intervalSeconds 2
            lambda: replicas_of(cluster, ns, "worker-video") == 4,
            "video workers at 4",
        )
        held = target(policy_status(cluster, ns, "demo-broker"), "worker/video")
        assert held is not None and held["limitedBy"] == "missingMetric", held
        assert any(e.reason == "Holding" for e in events_for(cluster, ns, "demo-broker"))
    finally:
        _set_broker_replicas(cluster, 1)
    kubectl(cluster, "-n", "scalekeeper-system", "rollout", "status", "deploy/redis", "--timeout=120s")
    # Back once the exporter listens again and the workers have reconnected (Celery's retry backs off): within
    # about 40 s of Redis here. The workers the scale-up started while Redis was away may never answer remote
    # control (their queues unknown to the exporter): idle, they must not hold the count back.
    try:
        wait_for(
            "MetricsAvailable=True again",
            lambda: (
                (condition(policy_status(cluster, ns, "demo-broker"), "MetricsAvailable") or {}).get("status")
                == "True"
            ),
            timeout=240,
        )
    except AssertionError as e:
        raise AssertionError(f"{e}\n{_exporter_story(cluster, ns)}") from None
    # The restarted broker kept nothing (no persistence in this setup): the workers come back down.
    wait_for(
        "video workers back at 1",
        lambda: replicas_of(cluster, ns, "worker-video") == 1,
        timeout=150,
        interval=2,
    )
    client.CustomObjectsApi(cluster.api).delete_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, "demo-broker"
    )
