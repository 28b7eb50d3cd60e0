"""The two sides and what they are given: scalekeeper's policy and KEDA's ScaledObject (its triggers, its
fastest behavior), sized alike; whether KEDA is installed; the HPA controller's sync period."""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from typing import Any

from bench.common import apiservice_condition, kubectl
from bench.reaction import scaling_policy

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
PER_REPLICA = 10
MAX_REPLICAS = 10


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
