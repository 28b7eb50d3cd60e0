"""Faults the operator must ride out on the real cluster: Prometheus going away, and another writer changing
what the operator sizes or owns."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from .conftest import Cluster, kubectl, release_policies
from .kube_helpers import (
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
from .monitoring import alert_seen
from .operator_fixture import RunningOperator
from .test_operator_basics import load_query, prometheus_value, set_load, start_exporter
from .waiting import CYCLES, POLICIES, holds_until, operator_metric, wait_cycles, wait_deleted, wait_for

pytestmark = pytest.mark.cluster


def replicas_policy(namespace: str, name: str, per_replica: int, minimum: int = 1) -> dict[str, Any]:
    quick = {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 10, "periodSeconds": 15}],
    }
    return {
        "intervalSeconds": 2,
        "readReplicas": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": minimum,
            "maxReplicas": 6,
            "metric": {"query": load_query(namespace), "perReplica": per_replica},
            "behavior": {"scaleUp": quick, "scaleDown": quick},
        },
    }


def set_prometheus_replicas(cluster: Cluster, replicas: int) -> None:
    client.AppsV1Api(cluster.api).patch_namespaced_deployment_scale(
        "prometheus", "scalekeeper-system", {"spec": {"replicas": replicas}}
    )


def test_prometheus_outage_holds_then_recovers(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(
        namespace, deployment("target", 4, {"app": "target"}, cluster.operator_image)
    )
    start_exporter(cluster, namespace, "40")  # 4 replicas' worth at 10 per replica
    wait_for(
        "Prometheus to see the load", lambda: prometheus_value(cluster, load_query(namespace)), timeout=120
    )
    apply_policy(cluster, namespace, "p", replicas_policy(namespace, "target", 10))
    wait_decision(cluster, namespace, "p", "readReplicas", 4)

    set_prometheus_replicas(cluster, 0)
    stopped = time.monotonic()
    try:
        down = wait_condition(cluster, namespace, "p", "MetricsAvailable", "False", timeout=90)
        # Refused, timed out before an answer (kind's port mapping accepts, then has nowhere to send it),
        # or gone from the results: each named.
        assert any(why in down["message"] for why in ("unreachable", "did not answer", "no series")), down
        # Blind: the load "drops" to nothing as far as the exporter says, but nothing is scaled down.
        kubectl(cluster, "-n", namespace, "exec", "deploy/exporter", "--", "sh", "-c", "echo 0 > /load/value")
        # Two minutes blind (the fault table's outage: a Prometheus restart with a slow WAL replay), held
        # through every cycle of it: the cycles are counted, so a stalled operator does not pass for one
        # that holds.
        cycles, since = operator_metric(running_operator, CYCLES), time.monotonic()
        holds_until(
            "the target at 4 while blind",
            lambda: replicas_of(cluster, namespace, "target") == 4,
            until=stopped + 120,
            interval=5,
        )
        # One every 2 s (intervalSeconds), or 5 s when each waits out the Prometheus client's timeout.
        blind, elapsed = operator_metric(running_operator, CYCLES) - cycles, time.monotonic() - since
        assert blind >= elapsed / 10, f"{blind:.0f} cycles in {elapsed:.0f} s blind"
        assert target(policy_status(cluster, namespace, "p"), "readReplicas")["limitedBy"] == "missingMetric"  # type: ignore[index]
    finally:
        set_prometheus_replicas(cluster, 1)
    kubectl(cluster, "-n", "scalekeeper-system", "rollout", "status", "deploy/prometheus", "--timeout=180s")
    back = time.monotonic()
    wait_condition(cluster, namespace, "p", "MetricsAvailable", "True", timeout=120)
    # The real value (0) now applies: down to minReplicas.
    wait_for("scaled down on real data", lambda: replicas_of(cluster, namespace, "target") == 1, timeout=60)
    assert time.monotonic() - back < 120
    reasons = [e.reason for e in events_for(cluster, namespace, "p")]
    assert "MetricsUnavailable" in reasons and "MetricsRead" in reasons, reasons
    if running_operator.mode != "cluster":
        return  # the alert rules see only the chart's operator, which the cluster's Prometheus scrapes
    # The metric itself goes missing, Prometheus up: the chart's alert, with the policy's own labels, pending
    # then firing (the cluster's Prometheus holds each alert 20 s where the chart's rules say 5 m).
    set_load(cluster, namespace, "absent")
    wait_condition(cluster, namespace, "p", "MetricsAvailable", "False", timeout=60)
    for state in ("pending", "firing"):
        (alert,) = wait_for(
            f"ScalekeeperMetricsUnavailable {state}",
            lambda s=state: alert_seen(  # type: ignore[misc]
                cluster, "ScalekeeperMetricsUnavailable", namespace=namespace, policy="p", alertstate=s
            ),
            timeout=60,
        )
        assert alert["metric"]["severity"] == "warning", alert


def test_another_writer_is_corrected_without_a_fight(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    apps, hpas = client.AppsV1Api(cluster.api), client.AutoscalingV2Api(cluster.api)
    apps.create_namespaced_deployment(
        namespace, deployment("target", 2, {"app": "target"}, cluster.operator_image)
    )
    apps.create_namespaced_deployment(namespace, deployment("web", 1, {"app": "web"}, cluster.operator_image))
    start_exporter(cluster, namespace, "20")  # 2 replicas' worth
    wait_for(
        "Prometheus to see the load", lambda: prometheus_value(cluster, load_query(namespace)), timeout=120
    )
    spec = replicas_policy(namespace, "target", 10)
    spec["web"] = {"deployment": "web", "minReplicas": 1, "maxReplicas": 3, "cpuUtilization": 80}
    apply_policy(cluster, namespace, "p", spec)
    wait_for(
        "the owned HPA",
        lambda: hpas.read_namespaced_horizontal_pod_autoscaler("p-web", namespace),
        timeout=60,
    )
    wait_for(
        "target at 2", lambda: target(policy_status(cluster, namespace, "p"), "readReplicas"), timeout=60
    )

    # Someone scales the target by hand: the next cycles put it back, once.
    before = sum(1 for e in events_for(cluster, namespace, "p") if e.reason == "Scaled")
    apps.patch_namespaced_deployment_scale("target", namespace, {"spec": {"replicas": 5}})
    wait_for(
        "the hand-set replicas to be corrected",
        lambda: replicas_of(cluster, namespace, "target") == 2,
        timeout=60,
    )
    wait_cycles(
        running_operator, 3, lambda: replicas_of(cluster, namespace, "target") == 2, "the target at 2"
    )
    scaled = sum(1 for e in events_for(cluster, namespace, "p") if e.reason == "Scaled") - before
    assert scaled == 1, scaled  # one write back, not a loop

    # Someone edits the owned HPA: it is put back to the spec.
    hpas.patch_namespaced_horizontal_pod_autoscaler("p-web", namespace, {"spec": {"maxReplicas": 9}})
    wait_for(
        "the owned HPA to be restored",
        lambda: hpas.read_namespaced_horizontal_pod_autoscaler("p-web", namespace).spec.max_replicas == 3,
        timeout=60,
    )
    generation = hpas.read_namespaced_horizontal_pod_autoscaler("p-web", namespace).metadata.generation
    # No further writes once it matches.
    wait_cycles(
        running_operator,
        3,
        lambda: (
            hpas.read_namespaced_horizontal_pod_autoscaler("p-web", namespace).metadata.generation
            == generation
        ),
        f"the owned HPA at generation {generation}",
    )


def test_operator_killed_after_a_step_does_not_double_step_after_restart(cluster: Cluster) -> None:
    import signal
    import uuid

    from .operator_fixture import delete_test_lease, install_crd, local_operator, stop_local

    install_crd(cluster)
    core, apps = client.CoreV1Api(cluster.api), client.AppsV1Api(cluster.api)
    ns = f"rs-{uuid.uuid4().hex[:8]}"  # outside the session operator's namespaces
    core.create_namespace({"metadata": {"name": ns, "labels": {"scalekeeper-test": "1"}}})
    env = {
        "SCALEKEEPER_NAMESPACES": ns,
        "SCALEKEEPER_LEASE_NAME": f"lease-{ns}",
        "SCALEKEEPER_LEASE_SECONDS": "4",
    }
    first = local_operator(cluster, "restart-a", env)
    second = None
    try:
        apps.create_namespaced_deployment(
            ns, deployment("target", 1, {"app": "target"}, cluster.operator_image)
        )
        start_exporter(cluster, ns, "50")  # five replicas' worth
        wait_for("Prometheus to see the load", lambda: prometheus_value(cluster, load_query(ns)), timeout=120)
        spec = replicas_policy(ns, "target", 10)
        # One pod per minute: the rate policy a restart must not forget.
        spec["readReplicas"]["behavior"]["scaleUp"] = {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
        }
        apply_policy(cluster, ns, "p", spec)
        # A second policy held at its max: its Holding Event is told once, not again by the new process.
        apps.create_namespaced_deployment(
            ns,
            deployment("capped", 2, {"app": "capped"}, cluster.operator_image),  # already at its max
        )
        capped = replicas_policy(ns, "capped", 10)
        capped["readReplicas"]["maxReplicas"] = 2
        apply_policy(cluster, ns, "cap", capped)

        def holding() -> int:
            return sum(1 for e in events_for(cluster, ns, "cap") if e.reason == "Holding")

        wait_for(
            "the first step to 2", lambda: replicas_of(cluster, ns, "target") == 2, timeout=60, interval=0.5
        )
        stepped = time.monotonic()
        wait_for("cap held at its max, told once", lambda: holding() == 1, timeout=60)
        # The Event is posted before the status is written in the same cycle: a kill in between would leave
        # the next process nothing to read the hold from. What this test asks is that a hold in the status
        # is not told again, so it waits for the status to hold it.
        wait_for(
            "cap's hold in its status",
            lambda: (
                (target(policy_status(cluster, ns, "cap"), "readReplicas") or {}).get("limitedBy") == "max"
            ),
            timeout=30,
        )
        wait_for(
            "the step recorded in status",
            lambda: (target(policy_status(cluster, ns, "p"), "readReplicas") or {}).get("history"),
            timeout=30,
        )
        first.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        first.process.wait()  # type: ignore[union-attr]
        second = local_operator(cluster, "restart-b", env)
        wait_for(
            "the new process to decide", lambda: second.logs().count('"message": "decision"') > 0, timeout=40
        )

        # Until the minute is over the restarted operator holds at 2, as the first would have: the next
        # step, which only a live operator takes, comes no earlier than the period allows.
        def next_step() -> tuple[int, float] | None:
            count = replicas_of(cluster, ns, "target")
            return None if count == 2 else (count, time.monotonic() - stepped)

        count, after = wait_for("the next step once the period is over", next_step, timeout=90)
        assert count == 3 and after >= 55, (
            f"a step to {count} {after:.0f} s after the first, in its 60 s period"
        )
        status = target(policy_status(cluster, ns, "p"), "readReplicas")
        assert status is not None and status["limitedBy"] == "scaleUpPolicy", status
        # The restarted process read what was already told from the status: no second Holding Event.
        assert holding() == 1, [e.message for e in events_for(cluster, ns, "cap")]
        assert replicas_of(cluster, ns, "capped") == 2
    finally:
        release_policies(cluster, ns)
        stop_local(first)
        if second is not None:
            stop_local(second)
        delete_test_lease(cluster, env["SCALEKEEPER_LEASE_NAME"])
        core.delete_namespace(ns, propagation_policy="Background")


def test_policy_deleted_mid_scale_up_removes_what_it_owns_and_leaves_the_targets(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    apps, hpas = client.AppsV1Api(cluster.api), client.AutoscalingV2Api(cluster.api)
    objects = client.CustomObjectsApi(cluster.api)
    apps.create_namespaced_deployment(namespace, deployment("web", 1, {"app": "web"}, cluster.operator_image))
    apps.create_namespaced_deployment(
        namespace, deployment("target", 1, {"app": "target"}, cluster.operator_image)
    )
    start_exporter(cluster, namespace, "50")  # five replicas' worth
    wait_for(
        "Prometheus to see the load", lambda: prometheus_value(cluster, load_query(namespace)), timeout=120
    )
    spec = replicas_policy(namespace, "target", 10)
    # One pod every 20 s: the policy is deleted between two steps of a climb to 5.
    spec["readReplicas"]["behavior"]["scaleUp"] = {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 20}],
    }
    spec["web"] = {"deployment": "web", "minReplicas": 1, "maxReplicas": 3, "cpuUtilization": 80}
    apply_policy(cluster, namespace, "p", spec)
    wait_for("the owned HPA", lambda: hpas.read_namespaced_horizontal_pod_autoscaler("p-web", namespace))
    wait_for(
        "the first step to 2",
        lambda: replicas_of(cluster, namespace, "target") == 2,
        timeout=60,
        interval=0.5,
    )
    stepped = time.monotonic()
    log_offset = len(running_operator.logs())
    policies = operator_metric(running_operator, POLICIES)

    objects.delete_namespaced_custom_object("scalekeeper.dev", "v1alpha1", namespace, "scalingpolicies", "p")
    wait_deleted(
        "the policy (no finalizer holds it)",
        lambda: objects.get_namespaced_custom_object(
            "scalekeeper.dev", "v1alpha1", namespace, "scalingpolicies", "p"
        ),
        timeout=30,
    )
    wait_deleted(
        "the owned HPA (garbage-collected)",
        lambda: hpas.read_namespaced_horizontal_pod_autoscaler("p-web", namespace),
        timeout=60,
    )
    # The operator lets it go (no cycle of it is due again) ...
    wait_for(
        "the operator to drop the policy",
        lambda: operator_metric(running_operator, POLICIES) <= policies - 1,
        timeout=30,
    )
    # ... and the climb stops where it was: no further step, no reset, past the step its rate period would
    # have allowed (20 s after the first) and a cycle more. A deleted policy has no cycles left to count.
    holds_until(
        "the target at 2", lambda: replicas_of(cluster, namespace, "target") == 2, until=stepped + 20 + 2 * 2
    )
    assert replicas_of(cluster, namespace, "web") == 1
    after = running_operator.logs()[log_offset:]
    about_p = [
        line
        for line in after.splitlines()
        if f"{namespace}/p" in line or f'"namespace": "{namespace}"' in line
    ]
    failures = [line for line in about_p if "cycle failed" in line or '"severity": "error"' in line]
    assert not failures, failures[:3]


def _restart_control_plane_container(cluster: Cluster, component: str) -> None:
    """Stop a static pod's container in the kind node; the kubelet starts it again, as after a crash."""
    import subprocess

    def crictl(*args: str) -> str:
        return subprocess.run(
            ["docker", "exec", cluster.node_container, "crictl", *args],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    before = crictl("ps", "--name", f"^{component}$", "-q")
    assert before, f"no running {component} container in {cluster.node_container}"
    crictl("stop", *before.split())
    wait_for(
        f"a new {component} container",
        lambda: (now := crictl("ps", "--name", f"^{component}$", "-q")) and now != before,
        timeout=120,
        interval=2,
    )

    def api_ready() -> bool:
        return kubectl(cluster, "get", "--raw", "/readyz", check=False).stdout.strip() == "ok"

    wait_for("the API server to answer /readyz", api_ready, timeout=180, interval=2)
    # The controllers and the scheduler must be working again too, or the next test inherits a half
    # cluster: both renew their leader Lease through the restarted API server.
    restarted = datetime.now(UTC)
    leases = client.CoordinationV1Api(cluster.api)

    def renewed(holder: str) -> bool:
        return bool(leases.read_namespaced_lease(holder, "kube-system").spec.renew_time > restarted)

    for holder in ("kube-controller-manager", "kube-scheduler"):
        wait_for(f"{holder} to renew its lease", lambda h=holder: renewed(h), timeout=180, interval=2)  # type: ignore[misc]


def _operator_restarts(cluster: Cluster, operator: RunningOperator) -> int:
    """How often the operator under test has died: 0 or 1 for a local process, restartCount in-cluster."""
    if operator.process is not None:
        return 0 if operator.process.poll() is None else 1
    pods = client.CoreV1Api(cluster.api).list_namespaced_pod(
        "scalekeeper-system", label_selector="app.kubernetes.io/name=scalekeeper"
    )
    return sum(cs.restart_count for p in pods.items for cs in (p.status.container_statuses or []))


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_control_plane_restart_is_ridden_out_without_a_lost_or_doubled_step(
    cluster: Cluster, namespace: str, running_operator: RunningOperator, component: str
) -> None:
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(
        namespace, deployment("target", 1, {"app": "target"}, cluster.operator_image)
    )
    start_exporter(cluster, namespace, "30")
    wait_for(
        "Prometheus to see the load", lambda: prometheus_value(cluster, load_query(namespace)), timeout=120
    )
    apply_policy(cluster, namespace, "p", replicas_policy(namespace, "target", 10))
    wait_for("3 replicas", lambda: replicas_of(cluster, namespace, "target") == 3, timeout=60)
    restarts = _operator_restarts(cluster, running_operator)

    _restart_control_plane_container(cluster, component)

    # The load moves after the restart: the same operator process sees it and takes one step.
    scaled_before = sum(1 for e in events_for(cluster, namespace, "p") if e.reason == "Scaled")
    set_load(cluster, namespace, "50")
    wait_for(
        "5 replicas after the restart", lambda: replicas_of(cluster, namespace, "target") == 5, timeout=120
    )
    wait_cycles(running_operator, 3, lambda: replicas_of(cluster, namespace, "target") == 5, "5 replicas")
    scaled = [e.message for e in events_for(cluster, namespace, "p") if e.reason == "Scaled"]
    assert len(scaled) - scaled_before == 1, scaled
    assert _operator_restarts(cluster, running_operator) == restarts, (
        "the operator died with the control plane"
    )
    # And the cluster runs what was scaled: the controllers and the scheduler work again.
    apps_api = client.AppsV1Api(cluster.api)
    wait_for(
        "5 ready target pods",
        lambda: (apps_api.read_namespaced_deployment("target", namespace).status.ready_replicas or 0) == 5,
        timeout=180,
        interval=2,
    )
    ready = condition(policy_status(cluster, namespace, "p"), "Ready")
    assert ready is not None and ready["status"] == "True", ready
