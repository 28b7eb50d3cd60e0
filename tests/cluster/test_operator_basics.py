"""The operator against the real API server: ownership, garbage collection, conflicts, DryRun, bad data.

These need no demo application: their metrics come from a small exporter pod whose value the test sets.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from functools import partial
from typing import Any

import pytest
from kubernetes import client

from .conftest import Cluster, kubectl
from .kube_helpers import (
    GROUP,
    PLURAL,
    VERSION,
    apply_policy,
    condition,
    deployment,
    events_for,
    policy_status,
    replicas_of,
    target,
    wait_condition,
    wait_decision,
)
from .operator_fixture import RunningOperator
from .waiting import wait_cycles, wait_deleted, wait_for

pytestmark = pytest.mark.cluster

# An exporter whose value is read from a file at every scrape; the test moves the load by writing the
# file inside the pod (kubectl exec), so Prometheus sees the change at its next scrape.
EXPORTER = (
    "import http.server,os\n"
    "open('/load/value','w').write(os.environ['INITIAL'])\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "  def do_GET(self):\n"
    "    v=open('/load/value').read().strip()\n"
    "    b=('# TYPE e2e_load gauge\\ne2e_load '+v+'\\n').encode() if v!='absent' else b''\n"
    # Prometheus 3 refuses a scrape without a Content-Type it knows.
    "    self.send_response(200); self.send_header('Content-Type','text/plain; version=0.0.4')\n"
    "    self.end_headers(); self.wfile.write(b)\n"
    "  def log_message(self,*a): pass\n"
    "http.server.HTTPServer(('',9100),H).serve_forever()\n"
)


def start_exporter(cluster: Cluster, namespace: str, value: str) -> None:
    apps = client.AppsV1Api(cluster.api)
    body = deployment("exporter", 1, {"app": "exporter"}, cluster.operator_image, ["python3", "-c", EXPORTER])
    pod = body["spec"]["template"]
    pod["metadata"]["annotations"] = {"prometheus.io/scrape": "true", "prometheus.io/port": "9100"}
    pod["spec"]["containers"][0]["env"] = [{"name": "INITIAL", "value": value}]
    pod["spec"]["containers"][0]["volumeMounts"] = [{"name": "load", "mountPath": "/load"}]
    pod["spec"]["volumes"] = [{"name": "load", "emptyDir": {}}]
    apps.create_namespaced_deployment(namespace, body)
    kubectl(cluster, "-n", namespace, "rollout", "status", "deploy/exporter", "--timeout=120s")


def set_load(cluster: Cluster, namespace: str, value: str) -> None:
    kubectl(
        cluster, "-n", namespace, "exec", "deploy/exporter", "--", "sh", "-c", f"echo {value} > /load/value"
    )


def prometheus_value(cluster: Cluster, query: str) -> list[Any]:
    url = f"{cluster.prometheus_url}/api/v1/query?query={urllib.parse.quote(query)}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        result: list[Any] = json.load(resp)["data"]["result"]
    return result


def load_query(namespace: str) -> str:
    return f'e2e_load{{namespace="{namespace}"}}'


def web_spec(deployment_name: str, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "deployment": deployment_name,
        "minReplicas": 1,
        "maxReplicas": 5,
        "cpuUtilization": 80,
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": 0,
                "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
            },
            "scaleDown": {
                "stabilizationWindowSeconds": 30,
                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}],
            },
        },
    }
    spec.update(extra)
    return spec


def test_owned_hpa_is_created_and_garbage_collected_with_the_policy(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    apps, hpas = client.AppsV1Api(cluster.api), client.AutoscalingV2Api(cluster.api)
    apps.create_namespaced_deployment(namespace, deployment("web", 2, {"app": "web"}, cluster.operator_image))
    policy = apply_policy(cluster, namespace, "shop", {"intervalSeconds": 2, "web": web_spec("web")})

    hpa = wait_for(
        "the owned HPA", lambda: hpas.read_namespaced_horizontal_pod_autoscaler("shop-web", namespace)
    )
    owner = hpa.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == (
        "ScalingPolicy",
        "shop",
        policy["metadata"]["uid"],
        True,
    )
    assert hpa.spec.scale_target_ref.name == "web"
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (1, 5)
    assert hpa.spec.metrics[0].resource.target.average_utilization == 80
    assert hpa.spec.behavior.scale_down.stabilization_window_seconds == 30
    ready = wait_condition(cluster, namespace, "shop", "Ready", "True")
    assert ready["reason"] == "Reconciled"

    client.CustomObjectsApi(cluster.api).delete_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, "shop"
    )

    wait_deleted(
        "the owned HPA to be garbage-collected",
        lambda: hpas.read_namespaced_horizontal_pod_autoscaler("shop-web", namespace),
    )
    # What the policy only scaled stays, at its size.
    assert replicas_of(cluster, namespace, "web") == 2


def test_a_policy_carries_no_finalizer_and_the_one_of_an_earlier_build_is_removed(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    objects = client.CustomObjectsApi(cluster.api)
    apps = client.AppsV1Api(cluster.api)
    for name in ("web", "web2"):
        apps.create_namespaced_deployment(
            namespace, deployment(name, 1, {"app": name}, cluster.operator_image)
        )
    fresh = apply_policy(cluster, namespace, "fresh", {"intervalSeconds": 2, "web": web_spec("web")})
    # As an operator running a daemon per policy left it: its finalizer on the policy.
    old = objects.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        PLURAL,
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ScalingPolicy",
            "metadata": {"name": "old", "finalizers": [f"{GROUP}/daemon"]},
            "spec": {"intervalSeconds": 2, "web": web_spec("web2")},
        },
    )
    assert old["metadata"]["finalizers"] == [f"{GROUP}/daemon"]

    def finalizers(name: str) -> list[str]:
        found = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        return list(found["metadata"].get("finalizers") or [])

    wait_for("the earlier build's finalizer removed", lambda: finalizers("old") == [], timeout=30)
    wait_condition(cluster, namespace, "fresh", "Ready", "True", timeout=60)
    assert finalizers("fresh") == [] and "finalizers" not in (fresh["metadata"] or {})
    for name in ("fresh", "old"):
        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        read = partial(objects.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL, name)
        wait_deleted(f"policy {name}", read, timeout=10)


def test_foreign_hpa_is_a_conflict_and_nothing_is_written(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    apps, hpas = client.AppsV1Api(cluster.api), client.AutoscalingV2Api(cluster.api)
    apps.create_namespaced_deployment(namespace, deployment("web", 1, {"app": "web"}, cluster.operator_image))
    hpas.create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "metadata": {"name": "hand-made"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1,
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }
                ],
            },
        },
    )
    apply_policy(cluster, namespace, "shop", {"intervalSeconds": 2, "web": web_spec("web")})
    conflict = wait_condition(cluster, namespace, "shop", "Conflict", "True")
    assert "hand-made" in conflict["message"]
    assert any(
        e.reason == "ForeignHPA" and "hand-made" in e.message for e in events_for(cluster, namespace, "shop")
    )
    names = {h.metadata.name for h in hpas.list_namespaced_horizontal_pod_autoscaler(namespace).items}
    assert names == {"hand-made"}
    assert hpas.read_namespaced_horizontal_pod_autoscaler("hand-made", namespace).spec.max_replicas == 3


def test_read_replicas_follow_a_live_metric_and_dry_run_writes_nothing(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    apps = client.AppsV1Api(cluster.api)
    sts = deployment("replica", 1, {"app": "replica"}, cluster.operator_image)
    sts["kind"] = "StatefulSet"
    sts["spec"]["serviceName"] = "replica"
    apps.create_namespaced_stateful_set(namespace, sts)
    start_exporter(cluster, namespace, "250")
    wait_for(
        "Prometheus to see the load", lambda: prometheus_value(cluster, load_query(namespace)), timeout=120
    )

    spec = {
        "mode": "DryRun",
        "intervalSeconds": 2,
        "readReplicas": {
            "target": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "replica"},
            "minReplicas": 1,
            "maxReplicas": 4,
            "floor": 2,
            "metric": {"query": load_query(namespace), "perReplica": 100},
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}],
                },
            },
        },
    }
    apply_policy(cluster, namespace, "db", spec)
    decided = wait_decision(cluster, namespace, "db", "readReplicas", 3)
    assert decided["currentReplicas"] == 1
    assert decided["reason"].startswith("DryRun: would scale 1 -> 3")
    assert apps.read_namespaced_stateful_set_scale("replica", namespace).spec.replicas == 1
    assert any(e.reason == "WouldScale" for e in events_for(cluster, namespace, "db"))

    spec["mode"] = "Enforce"
    apply_policy(cluster, namespace, "db", spec)
    wait_for(
        "3 read replicas",
        lambda: apps.read_namespaced_stateful_set_scale("replica", namespace).spec.replicas == 3,
    )
    assert any(e.reason == "Scaled" and "1 -> 3" in e.message for e in events_for(cluster, namespace, "db"))

    # Load gone: the count falls to the floor, never below it.
    set_load(cluster, namespace, "0")
    wait_for(
        "replicas down to the floor of 2",
        lambda: apps.read_namespaced_stateful_set_scale("replica", namespace).spec.replicas == 2,
        timeout=150,
    )
    lowered = wait_decision(cluster, namespace, "db", "readReplicas", 2, timeout=30)
    assert lowered["limitedBy"] == "floor", lowered


def test_missing_metric_holds_says_why_and_recovers(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(
        namespace, deployment("worker", 3, {"app": "worker"}, cluster.operator_image)
    )
    start_exporter(cluster, namespace, "absent")
    spec = {
        "intervalSeconds": 2,
        "readReplicas": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
            "minReplicas": 1,
            "maxReplicas": 6,
            "metric": {"query": load_query(namespace), "perReplica": 10},
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": 0,
                    "policies": [{"type": "Pods", "value": 5, "periodSeconds": 15}],
                }
            },
        },
    }
    apply_policy(cluster, namespace, "p", spec)
    metrics = wait_condition(cluster, namespace, "p", "MetricsAvailable", "False", timeout=60)
    assert load_query(namespace) in metrics["message"]
    assert any(e.reason == "MetricsUnavailable" for e in events_for(cluster, namespace, "p"))
    assert target(policy_status(cluster, namespace, "p"), "readReplicas")["limitedBy"] == "missingMetric"  # type: ignore[index]
    assert replicas_of(cluster, namespace, "worker") == 3  # held, not scaled down on no data

    set_load(cluster, namespace, "10")  # one replica's worth
    wait_condition(cluster, namespace, "p", "MetricsAvailable", "True", timeout=150)
    wait_for(
        "scaled down to 1 on real data", lambda: replicas_of(cluster, namespace, "worker") == 1, timeout=60
    )


def test_missing_target_is_reported_and_picked_up_when_it_appears_and_again_when_recreated(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    apply_policy(cluster, namespace, "p", {"intervalSeconds": 2, "web": web_spec("late")})
    ready = wait_condition(cluster, namespace, "p", "Ready", "False", timeout=60)
    assert "late" in ready["message"]
    assert any(e.type == "Warning" and "late" in e.message for e in events_for(cluster, namespace, "p"))
    client.AppsV1Api(cluster.api).create_namespaced_deployment(
        namespace, deployment("late", 1, {"app": "late"}, cluster.operator_image)
    )
    wait_condition(cluster, namespace, "p", "Ready", "True", timeout=60)
    client.AutoscalingV2Api(cluster.api).read_namespaced_horizontal_pod_autoscaler("p-web", namespace)

    # Deleted and created again: told again, picked up again.
    warnings = sum(1 for e in events_for(cluster, namespace, "p") if e.type == "Warning")
    client.AppsV1Api(cluster.api).delete_namespaced_deployment("late", namespace)
    gone = wait_condition(cluster, namespace, "p", "Ready", "False", timeout=60)
    assert "late" in gone["message"], gone
    wait_for(
        "a new Warning Event",
        lambda: sum(1 for e in events_for(cluster, namespace, "p") if e.type == "Warning") > warnings,
        timeout=30,
    )
    client.AppsV1Api(cluster.api).create_namespaced_deployment(
        namespace, deployment("late", 1, {"app": "late"}, cluster.operator_image)
    )
    wait_condition(cluster, namespace, "p", "Ready", "True", timeout=60)


@pytest.mark.parametrize(
    ("exported", "said"),
    [("NaN", "NaN"), ("+Inf", "infinite"), ("-Inf", "infinite"), ("-40", "negative")],
)
def test_a_hostile_value_from_a_real_exporter_holds_like_a_missing_one(
    cluster: Cluster, namespace: str, running_operator: RunningOperator, exported: str, said: str
) -> None:
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(
        namespace, deployment("worker", 3, {"app": "worker"}, cluster.operator_image)
    )
    start_exporter(cluster, namespace, exported)
    wait_for(
        "Prometheus to hold the value", lambda: prometheus_value(cluster, load_query(namespace)), timeout=120
    )
    quick = {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 5, "periodSeconds": 15}]}
    spec = {
        "intervalSeconds": 2,
        "readReplicas": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
            "minReplicas": 1,
            "maxReplicas": 6,
            "metric": {"query": load_query(namespace), "perReplica": 10},
            "behavior": {"scaleUp": quick, "scaleDown": quick},
        },
    }
    apply_policy(cluster, namespace, "p", spec)
    wait_for(
        f"MetricsAvailable=False saying {said}",
        lambda: (
            (c := condition(policy_status(cluster, namespace, "p"), "MetricsAvailable"))
            and c["status"] == "False"
            and said in c["message"]
        ),
        timeout=60,
    )
    # Neither zero (scale down) nor a huge demand (scale up), for several cycles.
    wait_cycles(running_operator, 3, lambda: replicas_of(cluster, namespace, "worker") == 3, "3 workers")
    assert target(policy_status(cluster, namespace, "p"), "readReplicas")["limitedBy"] == "missingMetric"  # type: ignore[index]

    set_load(cluster, namespace, "1e300")  # a number, if absurd: capped by maxReplicas
    wait_for("maxReplicas, not beyond", lambda: replicas_of(cluster, namespace, "worker") == 6, timeout=60)
    wait_cycles(running_operator, 2, lambda: replicas_of(cluster, namespace, "worker") == 6, "6 workers")
    assert target(policy_status(cluster, namespace, "p"), "readReplicas")["limitedBy"] == "max"  # type: ignore[index]


def test_a_forecast_raises_replicas_ahead_of_a_rise_seen_a_season_ago(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    """A one-minute season on the real Prometheus: a rise, a fall, then, one season minus the lead after
    the rise, the replicas go up again while the load is still zero, and the status says why."""
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(
        namespace, deployment("replica", 1, {"app": "replica"}, cluster.operator_image)
    )
    start_exporter(cluster, namespace, "0")
    wait_for(
        "Prometheus to see the load", lambda: prometheus_value(cluster, load_query(namespace)), timeout=120
    )
    fast = {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 4, "periodSeconds": 1}]}
    season, lead = 60, 20
    apply_policy(
        cluster,
        namespace,
        "p",
        {
            "intervalSeconds": 1,
            "readReplicas": {
                "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "replica"},
                "minReplicas": 1,
                "maxReplicas": 4,
                "metric": {
                    "query": load_query(namespace),
                    "perReplica": 10,
                    "forecast": {"seasonSeconds": season, "leadSeconds": lead},
                },
                "behavior": {"scaleUp": fast, "scaleDown": fast, "tolerance": 0.0},
            },
        },
    )
    wait_condition(cluster, namespace, "p", "Ready", "True", timeout=60)

    def load_is(value: float) -> bool:
        found = prometheus_value(cluster, load_query(namespace))
        return bool(found) and float(found[0]["value"][1]) == value

    set_load(cluster, namespace, "40")
    wait_for("Prometheus to see the rise", lambda: load_is(40), timeout=30, interval=0.2)
    rise = time.monotonic()
    wait_for("up to 4 on the load", lambda: replicas_of(cluster, namespace, "replica") == 4, timeout=30)
    time.sleep(max(0.0, rise + 12 - time.monotonic()))
    set_load(cluster, namespace, "0")
    wait_for("Prometheus to see the fall", lambda: load_is(0), timeout=30, interval=0.2)
    wait_for("down to 1 on the load", lambda: replicas_of(cluster, namespace, "replica") == 1, timeout=30)
    down_at = time.monotonic() - rise
    assert down_at < season - lead - 5, f"scaled down only {down_at:.0f} s after the rise"

    # One season minus the lead after the rise, the rise enters the forecast's window.
    wait_for("up to 4 on the forecast", lambda: replicas_of(cluster, namespace, "replica") == 4, timeout=60)
    up_at = time.monotonic() - rise
    assert load_is(0), "the load must still be zero: the forecast, not the load, raised it"
    assert season - lead - 3 <= up_at <= season - lead + 15, f"raised {up_at:.0f} s after the rise"

    def raise_reported() -> dict[str, Any] | None:
        found = target(policy_status(cluster, namespace, "p"), "readReplicas")
        return found if found is not None and found.get("desiredReplicas") == 4 else None

    # The cycle that raised them reports it right after its write.
    status = wait_for("the status of the raise", raise_reported, timeout=10, interval=0.2)
    assert status["limitedBy"] == "forecast" and "forecast 40" in status["reason"], status
    assert any("forecast" in e.message for e in events_for(cluster, namespace, "p") if e.reason == "Scaled")
