"""bench.loadtest on the cluster: one run's namespace (the demo's read tier and web), its autoscaler (none,
the seed's plain HPA, or a ScalingPolicy served by a local operator), the locust pod, the web Deployment's
replicas watched, and everything deleted after."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from bench.common import (
    KUBECTL,
    ROOT,
    apply_object,
    delete_prefixed,
    demo_render,
    images_env,
    redis_client,
    start_local_operator,
    stop_process,
    wait_for,
    wait_namespace_gone,
)
from bench.loadtest.report import RunRecord, parse_line
from scalekeeper import model

# The seed's web behavior (the demo policy's, README "How the rules work"): up 50 % per 60 s after a 60 s
# window, down 10 % per 60 s after 300 s: the plain HPA's.
SEED_BEHAVIOR: dict[str, Any] = {
    "scaleUp": {
        "stabilizationWindowSeconds": 60,
        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 300,
        "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}],
    },
}
CPU_TARGET, MEMORY_TARGET = 70, 80
RUNS = {"fixed": "fixed at minimum", "hpa": "plain HPA", "policy": "ScalingPolicy"}
DEMO_KEEP = {"demo-config", "db-primary", "db-replica", "db-replica-headless", "web"}
POLICY = "loadtest"
LOCUST_POD = "locust"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str
    prometheus: str
    redis_url: str
    core: client.CoreV1Api
    apps: client.AppsV1Api
    autoscaling: client.AutoscalingV2Api


@dataclass(frozen=True)
class Settings:
    """What one run deploys and offers (from the command line)."""

    demo_image: str
    locust_image: str
    points: str
    min_replicas: int
    max_replicas: int
    per_replica: float
    web_cpu: str
    web_cpu_request: str
    locust_cpu: str
    locust_env: dict[str, str]


def demo_objects(
    images: dict[str, str], ns: str, s: Settings, fixed_replicas: int | None
) -> list[dict[str, Any]]:
    """The demo's read tier and web, keys prefixed with the namespace (they share the cluster's Redis). The
    web pod's CPU limit is what one pod can carry (the demo's 1 core would be the whole machine's spare CPU
    in one pod). Its request is small: the cluster's own pods already request most of the node's 2 cores,
    and a pod the autoscaler asks for must be schedulable, not Pending for its reservation."""
    docs = [
        d for d in demo_render().render(images, key_prefix=f"{ns}:") if d["metadata"]["name"] in DEMO_KEEP
    ]
    for d in docs:
        if d["kind"] == "Deployment" and d["metadata"]["name"] == "web":
            for c in d["spec"]["template"]["spec"]["containers"]:
                c["resources"]["requests"]["cpu"] = s.web_cpu_request
                c["resources"]["limits"]["cpu"] = s.web_cpu
            if fixed_replicas is not None:
                d["spec"]["replicas"] = fixed_replicas
    return docs


def plain_hpa(min_replicas: int, max_replicas: int) -> dict[str, Any]:
    """The seed's HPA on web: CPU 70 %, memory 80 %, its behavior."""
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": name, "target": {"type": "Utilization", "averageUtilization": v}},
                }
                for name, v in (("cpu", CPU_TARGET), ("memory", MEMORY_TARGET))
            ],
            "behavior": SEED_BEHAVIOR,
        },
    }


POLICY_FILE = ROOT / "manifests" / "examples" / "loadtest" / "scalingpolicy.yaml"


def scaling_policy(ns: str, min_replicas: int, max_replicas: int, per_replica: float) -> dict[str, Any]:
    """manifests/examples/loadtest/scalingpolicy.yaml with the command line's bounds and perReplica. Its
    query names the namespace it runs in: a policy read from another namespace's pods is refused here."""
    doc: dict[str, Any] = yaml.safe_load(POLICY_FILE.read_text())
    web = doc["spec"]["web"]
    if f'namespace="{ns}"' not in web["requestRate"]["query"]:
        raise ValueError(f'{POLICY_FILE.name}: the request-rate query must select namespace="{ns}"')
    web["minReplicas"], web["maxReplicas"] = min_replicas, max_replicas
    web["requestRate"]["perReplica"] = per_replica
    model.parse_spec(doc["spec"])  # fails here, not in the operator, if the policy is not valid
    return doc


def locust_pod(image: str, env: dict[str, str], cpu_request: str, cpu_limit: str) -> dict[str, Any]:
    """The locustfile run headless against the namespace's web Service until its points end (make demo's
    web load too)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": LOCUST_POD, "labels": {"app": LOCUST_POD}},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True},
            "containers": [
                {
                    "name": "locust",
                    "image": image,
                    "args": [
                        *("locust", "-f", "/app/locustfile.py", "--headless", "--only-summary"),
                        *("--loglevel", "WARNING", "--host", "http://web"),
                    ],
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    # Capped: locust shares the two cores with what it measures.
                    "resources": {
                        "requests": {"cpu": cpu_request, "memory": "128Mi"},
                        "limits": {"cpu": cpu_limit, "memory": "512Mi"},
                    },
                    "securityContext": {"allowPrivilegeEscalation": False},
                }
            ],
        },
    }


class ReplicaWatch:
    """The web Deployment's spec.replicas and ready replicas, read every second (epoch, spec, ready)."""

    def __init__(self, apps: client.AppsV1Api, ns: str) -> None:
        self.apps, self.ns = apps, ns
        self.samples: list[tuple[float, int, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(1.0):
            with contextlib.suppress(Exception):
                d = self.apps.read_namespaced_deployment("web", self.ns)
                sample = (time.time(), int(d.spec.replicas or 0), int(d.status.ready_replicas or 0))
                if not self.samples or self.samples[-1][1:] != sample[1:]:
                    self.samples.append(sample)

    def finish(self) -> list[tuple[float, int, int]]:
        self.stop.set()
        self.thread.join(timeout=5)
        return list(self.samples)


def deployment_ready(apps: client.AppsV1Api, ns: str, name: str, kind: str = "Deployment") -> bool:
    read = apps.read_namespaced_deployment if kind == "Deployment" else apps.read_namespaced_stateful_set
    obj = read(name, ns)
    return bool((obj.status.ready_replicas or 0) >= (obj.spec.replicas or 1))


def hpa_has_metrics(c: Cluster, ns: str) -> bool:
    """An HPA in `ns` whose every metric has a current reading (the metrics API answers for web's pods)."""
    items = c.autoscaling.list_namespaced_horizontal_pod_autoscaler(ns).items
    return bool(items) and all(
        len(h.status.current_metrics or []) == len(h.spec.metrics or []) for h in items
    )


def follow_locust(
    core: client.CoreV1Api, kubeconfig: str, ns: str, on_line: Callable[[str], None], timeout: float
) -> None:
    """Its log, line by line, until the pod ends (kubectl logs -f returns then)."""
    wait_for(
        "locust pod running",
        lambda: core.read_namespaced_pod(LOCUST_POD, ns).status.phase in ("Running", "Succeeded", "Failed"),
        180,
        every=1.0,
    )
    proc = subprocess.Popen(
        [KUBECTL, "--kubeconfig", kubeconfig, "-n", ns, "logs", "-f", LOCUST_POD],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    timer = threading.Timer(timeout, proc.kill)
    timer.start()
    try:
        for line in proc.stdout:
            on_line(line)
    finally:  # an interrupt must not wait for the pod's end
        timer.cancel()
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def run_one(c: Cluster, name: str, s: Settings, timeout: float) -> RunRecord:
    """One run in namespace loadtest-<name>, deleted after (with its Redis keys and the operator)."""
    ns = f"loadtest-{name}"
    images = {"DEMO_IMAGE": s.demo_image, "EXPORTER_IMAGE": s.demo_image, "REDIS_IMAGE": redis_image()}
    record = RunRecord(name, RUNS[name], [], [], locust_cpu_limit=s.locust_cpu)
    operator: subprocess.Popen[bytes] | None = None
    c.core.create_namespace({"metadata": {"name": ns, "labels": {"scalekeeper-bench": "loadtest"}}})
    try:
        fixed = s.min_replicas if name == "fixed" else None
        for obj in demo_objects(images, ns, s, fixed):
            apply_object(c.kubeconfig, ns, obj)
        wait_for(
            "db-replica ready",
            lambda: deployment_ready(c.apps, ns, "db-replica", "StatefulSet"),
            180,
            1.0,
            (ApiException,),
        )
        wait_for("web ready", lambda: deployment_ready(c.apps, ns, "web"), 180, 1.0, (ApiException,))
        if name == "hpa":
            apply_object(c.kubeconfig, ns, plain_hpa(s.min_replicas, s.max_replicas))
        if name == "policy":
            operator = start_local_operator(
                c.kubeconfig,
                c.prometheus,
                ns,
                lease="loadtest-operator",
                lease_namespace=ns,
                identity=f"bench-loadtest-{name}",
                log_name=f"loadtest-operator-{name}.log",
                crd_if_missing=True,
            )
            apply_object(c.kubeconfig, ns, scaling_policy(ns, s.min_replicas, s.max_replicas, s.per_replica))
        if name != "fixed":
            # The HPA's first CPU and memory readings take a metrics-server scrape or two: the load waits.
            wait_for(
                f"{name}: HPA with every metric read",
                lambda: hpa_has_metrics(c, ns),
                180,
                2.0,
                (ApiException,),
            )
        watch = ReplicaWatch(c.apps, ns)
        env = {"LOAD_POINTS": s.points, **s.locust_env}
        apply_object(c.kubeconfig, ns, locust_pod(s.locust_image, env, "100m", s.locust_cpu))

        def on_line(line: str) -> None:
            interval = parse_line(line.rstrip("\n"))
            if interval is None:
                if line.strip() and "spawn rate is very high" not in line:
                    record.notes.append(line.rstrip("\n"))
                return
            record.intervals.append(interval)
            web = watch.samples[-1][1:] if watch.samples else (0, 0)
            print(
                f"  {name} t={interval.start:4.0f}s asked {interval.target_rps or 0:5.1f}/s "
                f"sent {interval.rps:5.1f}/s "
                f"p50 {interval.p50 or 0:6.0f} p95 {interval.p95 or 0:6.0f} p99 {interval.p99 or 0:6.0f} ms "
                f"fail {interval.failures:3d} locust cpu {interval.cpu:.2f} web {web[0]} ({web[1]} ready)",
                flush=True,
            )

        follow_locust(c.core, c.kubeconfig, ns, on_line, timeout)
        if name == "policy":
            record.bottleneck = policy_bottleneck(c, ns)
        samples = watch.finish()
        origin = (
            record.intervals[0].epoch - record.intervals[0].start
            if record.intervals
            else (samples[0][0] if samples else 0.0)
        )
        record.replicas = [(t - origin, n, r) for t, n, r in samples]
        # The log ends with locust's process; the pod's phase follows within a kubelet sync.
        with contextlib.suppress(TimeoutError):
            wait_for("locust pod ended", lambda: pod_phase(c, ns) in ("Succeeded", "Failed"), 30, 1.0)
        phase = pod_phase(c, ns)
        if phase != "Succeeded":
            record.notes.append(f"locust pod ended {phase}")
        return record
    finally:
        if operator is not None:
            stop_process(operator, 15)
        c.core.delete_namespace(ns, propagation_policy="Background")
        if not wait_namespace_gone(c.core, ns, 180):
            print(f"namespace {ns} still there after 180 s", file=sys.stderr)
        with contextlib.suppress(Exception):
            delete_prefixed(redis_client(c.redis_url), f"{ns}:")


def policy_bottleneck(c: Cluster, ns: str) -> str:
    """The policy's Bottleneck condition at the run's end, and how many episodes its Warning Events told."""
    body = c.core.api_client.sanitize_for_serialization(
        client.CustomObjectsApi(c.core.api_client).get_namespaced_custom_object(
            model.GROUP, model.VERSION, ns, model.PLURAL, POLICY
        )
    )
    found = [x for x in (body.get("status") or {}).get("conditions") or [] if x.get("type") == "Bottleneck"]
    told = sum(
        e.reason == "Bottleneck" and e.involved_object.name == POLICY
        for e in c.core.list_namespaced_event(ns).items
    )
    if not found:
        return f"no Bottleneck condition; {told} Bottleneck Warning Events"
    cond = found[0]
    return (
        f"Bottleneck={cond.get('status')} ({cond.get('reason')}): {cond.get('message')}; "
        f"{told} Bottleneck Warning Event(s)"
    )


def pod_phase(c: Cluster, ns: str) -> str:
    return str(c.core.read_namespaced_pod(LOCUST_POD, ns).status.phase)


def redis_image() -> str:
    return images_env()["REDIS_IMAGE"]
