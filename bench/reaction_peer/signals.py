"""What the steps move: bench.reaction's gauge exporter, or a Celery queue's Redis list moved with real
messages; each set up in the run's namespace with what each side reads it with."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes import client

from bench.common import apply_object, demo_render, kubectl, prometheus_value, redis_client, wait_for
from bench.reaction import scaling_policy, set_value, start_exporter, wait_queryable
from bench.reaction_peer.autoscalers import SK, prometheus_trigger, redis_list_trigger, worker_policy

QUEUE = "video"  # one of the demo's queues (its producer refuses others)
EXPORTER = "queue-exporter"  # the demo's exporter (manifests/examples/demo/k8s/40-exporter.yaml)
POOL = 100  # messages published once; the highest step (LADDER's 100) uses them all
SIGNALS = ("prometheus", "redis-list", "web")


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


@dataclass
class Setup:
    """One signal, ready: what the steps write, and what each side reads it with."""

    signal: Signal
    trigger: dict[str, Any]
    policy: dict[str, Any]
    describe: str
    # Targets whose falls belong to another controller (scalekeeper's web tier: the HPA's, on CPU): timed on
    # rises only, and put back at the lowered floor by the bench after a fall.
    rises_only: tuple[str, ...] = ()


def setup_gauge(
    apps: client.AppsV1Api, kubeconfig: str, prom: str, ns: str, image: str, web: bool = False
) -> Setup:
    """bench.reaction's gauge; scalekeeper sizes its target as a read-replica tier, or with `web` as its web
    tier (the floor of the HPA it owns, which it raises the Deployment to)."""
    query = start_exporter(apps, kubeconfig, prom, ns, image)
    if web:
        policy = scaling_policy(query, 1, target=None, web=SK)
        tier = "scalekeeper's web tier (requestRate floor) on the query, measured on rises only"
    else:
        policy, tier = scaling_policy(query, 1, SK), "scalekeeper's readReplicas metric on the query"
    return Setup(
        GaugeSignal(kubeconfig, ns, prom, query),
        prometheus_trigger(query),
        policy,
        f"gauge exporter, query {query}; {tier}; KEDA prometheus trigger on the same query",
        rises_only=(SK,) if web else (),
    )


def setup_redis_list(kubeconfig: str, prom: str, redis_url: str, ns: str, env: dict[str, str]) -> Setup:
    """The demo's queue exporter in `ns` with key prefix "<ns>:", and POOL real tasks in its `video` list."""
    render = demo_render()

    prefix = f"{ns}:"
    images = {k: env[k] for k in ("DEMO_IMAGE", "EXPORTER_IMAGE", "REDIS_IMAGE")}
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
