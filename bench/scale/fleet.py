"""The fleet one size measures: its objects (policies, their Deployments, the metrics exporter), created
politely on a shared cluster, and deleted at the end (the policies first, while the operator still runs)."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from bench.common import prometheus_scalar, wait_for
from bench.scale.operator_process import Replicas
from bench.scale.settings import (
    API_ERRORS,
    GROUP,
    NAMESPACE_PREFIX,
    PLURAL,
    VERSION,
    FleetShape,
    Settings,
)

# The exporter builds its whole answer once (every value is 0) and serves it gzipped: at 3,000 policies it
# is 24,000 series scraped every second.
EXPORTER = (
    "import gzip,http.server,os\n"
    "run,n=os.environ['RUN'],int(os.environ['POLICIES'])\n"
    "names=os.environ['METRICS'].split(',')\n"
    'rows=[\'# TYPE bench_load gauge\']+[\'bench_load{run="%s",policy="sp-%05d",metric="%s"} 0\''
    " % (run,i,m) for i in range(n) for m in names]\n"
    "plain=('\\n'.join(rows)+'\\n').encode(); packed=gzip.compress(plain)\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "  def do_GET(self):\n"
    "    z='gzip' in self.headers.get('Accept-Encoding','')\n"
    "    b=packed if z else plain\n"
    # Prometheus 3 refuses a scrape without a Content-Type it knows.
    "    self.send_response(200); self.send_header('Content-Type','text/plain; version=0.0.4')\n"
    "    self.send_header('Content-Length',str(len(b)))\n"
    "    z and self.send_header('Content-Encoding','gzip')\n"
    "    self.end_headers(); self.wfile.write(b)\n"
    "  def log_message(self,*a): pass\n"
    "http.server.ThreadingHTTPServer(('',9100),H).serve_forever()\n"
)


# --------------------------------------------------------------------------- objects


def policy_name(i: int) -> str:
    return f"sp-{i:05d}"


def namespace_names(run: str, count: int) -> list[str]:
    return [f"{NAMESPACE_PREFIX}{run}-{k}" for k in range(count)]


def series(run: str, policy: str, metric: str) -> str:
    return f'bench_load{{run="{run}",policy="{policy}",metric="{metric}"}}'


def deployment_body(name: str, run: str, image: str, replicas: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"bench-scale": run}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": image,
                            "command": ["python3", "-c", "import time; time.sleep(1e9)"],
                        }
                    ],
                    "terminationGracePeriodSeconds": 1,
                },
            },
        },
    }


def statefulset_body(name: str, run: str, image: str) -> dict[str, Any]:
    """A StatefulSet at 0 replicas: its controller makes one ControllerRevision and no pod."""
    deployment = deployment_body(name, run, image)
    return {**deployment, "kind": "StatefulSet", "spec": {**deployment["spec"], "serviceName": name}}


def workloads(policy: str, shape: FleetShape) -> list[tuple[str, str]]:
    """(kind, name) of every object `policy` sizes."""
    return [(kind, f"{policy}-{suffix}") for kind, suffix in shape.targets]


def policy_body(i: int, run: str, interval: int, shape: FleetShape) -> dict[str, Any]:
    name = policy_name(i)
    kinds = {suffix: kind for kind, suffix in shape.targets}
    spec: dict[str, Any] = {
        "intervalSeconds": interval,
        "readReplicas": {
            "target": {"apiVersion": "apps/v1", "kind": kinds["read"], "name": f"{name}-read"},
            "minReplicas": 0,
            "maxReplicas": 5,
            "metric": {"query": series(run, name, "read"), "perReplica": 10.0},
        },
    }
    if "web" in kinds:
        # requestRate only: the HPA gets no resource metric, and at 0 replicas it scales nothing anyway.
        spec["web"] = {
            "deployment": f"{name}-web",
            "minReplicas": 1,
            "maxReplicas": 5,
            "requestRate": {"query": series(run, name, "web"), "perReplica": 10.0},
        }
    queues = [suffix.removeprefix("worker-") for suffix in kinds if suffix.startswith("worker-")]
    if queues:
        spec["workers"] = [
            {
                "queue": f"q{q}",
                "deployment": f"{name}-worker-{q}",
                "minReplicas": 0,
                "maxReplicas": 5,
                "tasksPerWorker": 10,
                "metrics": {
                    "waiting": series(run, name, f"waiting-q{q}"),
                    "inFlight": series(run, name, f"inflight-q{q}"),
                },
            }
            for q in queues
        ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "labels": {"bench-scale": run}},
        "spec": spec,
    }


def exporter_body(run: str, policies: int, image: str, metrics: tuple[str, ...]) -> dict[str, Any]:
    body = deployment_body("bench-exporter", run, image, replicas=1)
    pod = body["spec"]["template"]
    pod["metadata"]["annotations"] = {"prometheus.io/scrape": "true", "prometheus.io/port": "9100"}
    container = pod["spec"]["containers"][0]
    container["command"] = ["python3", "-c", EXPORTER]
    container["env"] = [
        {"name": "RUN", "value": run},
        {"name": "POLICIES", "value": str(policies)},
        {"name": "METRICS", "value": ",".join(metrics)},
    ]
    return body


# --------------------------------------------------------------------------- polite creation


class RateLimiter:
    """At most `per_second` calls started per second across threads: the API server is shared."""

    def __init__(self, per_second: float) -> None:
        self._gap = 1.0 / per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._gap
        time.sleep(max(0.0, start - now))


def call_politely(limiter: RateLimiter, create: Callable[[], Any], attempts: int = 5) -> None:
    """One creation; AlreadyExists is success (a retried call), throttling and 5xx are retried."""
    for attempt in range(attempts):
        limiter.wait()
        try:
            create()
            return
        except ApiException as exc:
            if exc.status == 409:
                return
            if exc.status not in (429, 500, 503, 504) or attempt == attempts - 1:
                raise
            time.sleep(2**attempt)


def create_all(settings: Settings, calls: list[Callable[[], Any]]) -> None:
    limiter = RateLimiter(settings.qps)
    with ThreadPoolExecutor(settings.concurrency) as pool:
        for _ in pool.map(lambda call: call_politely(limiter, call), calls):
            pass


# --------------------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    """What one size created: the namespaces (all of them, for cleanup) and where each policy lives."""

    run: str
    size: int
    namespaces: list[str]

    def namespace_of(self, i: int) -> str:
        return self.namespaces[i % len(self.namespaces)]


def create_namespaces(core: client.CoreV1Api, fleet: Fleet) -> None:
    for ns in fleet.namespaces:
        core.create_namespace({"metadata": {"name": ns, "labels": {"bench-scale": fleet.run}}})


def start_exporter(apps: client.AppsV1Api, fleet: Fleet, image: str, shape: FleetShape) -> None:
    body = exporter_body(fleet.run, fleet.size, image, shape.metrics)
    apps.create_namespaced_deployment(fleet.namespaces[0], body)
    wait_for(
        "the exporter to run",
        lambda: (
            (
                apps.read_namespaced_deployment_status(
                    "bench-exporter", fleet.namespaces[0]
                ).status.available_replicas
                or 0
            )
            >= 1
        ),
        timeout=180,
        every=1.0,
        retry_on=API_ERRORS,
    )


def wait_for_series(prometheus: str, fleet: Fleet, shape: FleetShape) -> None:
    expected = fleet.size * len(shape.metrics)
    wait_for(
        f"Prometheus to hold all {expected} bench_load series",
        lambda: prometheus_scalar(prometheus, f'count(bench_load{{run="{fleet.run}"}})') == expected,
        timeout=180,
        every=1.0,
        retry_on=API_ERRORS,
    )


def create_workloads(settings: Settings, apps: client.AppsV1Api, fleet: Fleet) -> None:
    calls: list[Callable[[], Any]] = []
    for i in range(fleet.size):
        ns = fleet.namespace_of(i)
        for kind, name in workloads(policy_name(i), settings.shape):
            if kind == "StatefulSet":
                body = statefulset_body(name, fleet.run, settings.image)
                calls.append(functools.partial(apps.create_namespaced_stateful_set, ns, body))
            else:
                body = deployment_body(name, fleet.run, settings.image)
                calls.append(functools.partial(apps.create_namespaced_deployment, ns, body))
    create_all(settings, calls)


def create_policies(settings: Settings, objects: client.CustomObjectsApi, fleet: Fleet) -> None:
    calls: list[Callable[[], Any]] = []
    for i in range(fleet.size):
        ns, body = fleet.namespace_of(i), policy_body(i, fleet.run, settings.interval, settings.shape)
        calls.append(
            functools.partial(objects.create_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, body)
        )
    create_all(settings, calls)


# --------------------------------------------------------------------------- cleanup


def delete_policies(objects: client.CustomObjectsApi, fleet: Fleet, op: Replicas | None) -> None:
    """Delete the policies while the operator runs (it removes its finalizer); if it cannot (dead, or too
    slow), remove the finalizer ourselves, only ever on this run's policies."""
    for ns in fleet.namespaces:
        with contextlib.suppress(ApiException):
            objects.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)

    def remaining() -> list[tuple[str, str]]:
        left = []
        for ns in fleet.namespaces:
            with contextlib.suppress(ApiException):
                items = objects.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
                left += [(ns, item["metadata"]["name"]) for item in items]
        return left

    timeout = 60 + fleet.size / 5 if op is not None and op.alive() else 0
    with contextlib.suppress(TimeoutError):
        wait_for("the operator to release the policies", lambda: not remaining(), timeout, 2, API_ERRORS)
    for ns, name in remaining():
        with contextlib.suppress(ApiException):
            objects.patch_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, name, {"metadata": {"finalizers": None}}
            )


def delete_namespaces(core: client.CoreV1Api, fleet: Fleet, wait_seconds: float) -> None:
    for ns in fleet.namespaces:
        with contextlib.suppress(ApiException):
            core.delete_namespace(ns)

    def gone() -> bool:
        names = {
            n.metadata.name for n in core.list_namespace(label_selector=f"bench-scale={fleet.run}").items
        }
        return not names

    # Waiting keeps one size's garbage collection out of the next size's measurement.
    with contextlib.suppress(TimeoutError):
        wait_for("the namespaces to be deleted", gone, wait_seconds, 3, API_ERRORS)


# --------------------------------------------------------------------------- one size's fleet


@dataclass
class Apis:
    core: client.CoreV1Api
    apps: client.AppsV1Api
    objects: client.CustomObjectsApi


def build_fleet(settings: Settings, apis: Apis, fleet: Fleet) -> None:
    create_namespaces(apis.core, fleet)
    start_exporter(apis.apps, fleet, settings.image, settings.shape)
    wait_for_series(settings.prometheus, fleet, settings.shape)
    create_workloads(settings, apis.apps, fleet)
    create_policies(settings, apis.objects, fleet)
