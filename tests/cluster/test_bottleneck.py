"""A bottleneck episode on the real cluster, with the operator the chart installs: a web tier whose
maxReplicas is too low for the request rate Prometheus reads."""

from __future__ import annotations

import pytest
from kubernetes import client

from .conftest import Cluster, kubectl
from .kube_helpers import apply_policy, condition, deployment, events_for, policy_status, wait_condition
from .monitoring import assert_every_panel_answers
from .operator_fixture import RunningOperator
from .test_operator_basics import load_query, prometheus_value, set_load, start_exporter, web_spec
from .waiting import wait_cycles, wait_for

# `make test` runs this module once, in hack/test.sh's chart-installed pass (INSTALLED_ONLY there); run alone,
# it works against either operator.
pytestmark = pytest.mark.cluster


def test_a_web_tier_capped_too_low_is_one_bottleneck_episode_told_once(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    apps = client.AppsV1Api(cluster.api)
    apps.create_namespaced_deployment(namespace, deployment("web", 1, {"app": "web"}, cluster.operator_image))
    start_exporter(cluster, namespace, "500")
    wait_for(
        "Prometheus to see the load", lambda: prometheus_value(cluster, load_query(namespace)), timeout=60
    )
    # 500 requests/s at 100 a replica needs 5; maxReplicas 2. At intervalSeconds 1 an episode starts after 6 s
    # saturated and ends after 12 s clear.
    rate = {"query": load_query(namespace), "perReplica": 100}
    apply_policy(
        cluster,
        namespace,
        "shop",
        {"intervalSeconds": 1, "web": web_spec("web", maxReplicas=2, requestRate=rate)},
    )

    held = wait_condition(cluster, namespace, "shop", "Bottleneck", "True", timeout=60)
    assert held["reason"] == "AtMaxReplicas", held
    assert held["message"] == "web: at maxReplicas 2 while its demand needs 5", held
    status = policy_status(cluster, namespace, "shop")
    assert status["bottleneck"] == "web"
    assert [(b["name"], b["reason"]) for b in status["bottlenecks"]] == [("web", "AtMaxReplicas")]
    assert condition(status, "ScalingLimited")["status"] == "True"  # type: ignore[index]
    # The printer column, as kubectl prints it.
    table = kubectl(cluster, "-n", namespace, "get", "scalingpolicy", "shop").stdout.splitlines()
    assert table[0].split()[-2:] == ["BOTTLENECK", "AGE"] and table[1].split()[-2] == "web", table
    if running_operator.mode == "cluster":
        # The chart's dashboard while the policy is sized (only the chart's operator is scraped).
        assert_every_panel_answers(cluster, namespace, "shop")

    # Still saturated for more cycles: no second Warning.
    wait_cycles(
        running_operator,
        4,
        lambda: condition(policy_status(cluster, namespace, "shop"), "Bottleneck")["status"] == "True",  # type: ignore[index]
        "Bottleneck=True",
    )
    warnings = [e for e in events_for(cluster, namespace, "shop") if e.reason == "Bottleneck"]
    assert [(e.type, e.message) for e in warnings] == [
        ("Warning", "web saturated for 6s: at maxReplicas 2 while its demand needs 5")
    ]

    set_load(cluster, namespace, "100")  # one replica's worth: clear
    cleared = wait_condition(cluster, namespace, "shop", "Bottleneck", "False", timeout=60)
    assert cleared["reason"] == "NoBottleneck"
    status = policy_status(cluster, namespace, "shop")
    assert status["bottleneck"] == "none" and status["bottlenecks"] == []
    told = [(e.type, e.reason) for e in events_for(cluster, namespace, "shop") if "Bottleneck" in e.reason]
    assert sorted(told) == [("Normal", "BottleneckCleared"), ("Warning", "Bottleneck")], told


def test_a_workload_using_its_cpu_limit_is_a_bottleneck_read_from_cadvisor(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    """CPU from the kubelet's cAdvisor series, which the cluster's Prometheus scrapes through the API server:
    one pod spinning at its 100m limit."""
    apps = client.AppsV1Api(cluster.api)
    spin = ["python3", "-c", "while True: pass"]
    body = deployment("busy", 1, {"app": "busy"}, cluster.operator_image, spin, cpu_request="100m")
    body["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {"cpu": "100m"}
    apps.create_namespaced_deployment(namespace, body)
    # One replica is all the (constant) metric asks for: only its CPU can make it a bottleneck.
    apply_policy(
        cluster,
        namespace,
        "batch",
        {
            "intervalSeconds": 1,
            "readReplicas": {
                "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "busy"},
                "minReplicas": 1,
                "maxReplicas": 3,
                "metric": {"query": "vector(1)", "perReplica": 10},
            },
        },
    )
    held = wait_condition(cluster, namespace, "batch", "Bottleneck", "True", timeout=90)
    assert held["reason"] == "CpuHigh", held
    assert held["message"].startswith("readReplicas: CPU at ") and "of its limits (> 80%)" in held["message"]
    warnings = [e.message for e in events_for(cluster, namespace, "batch") if e.reason == "Bottleneck"]
    assert len(warnings) == 1 and warnings[0].startswith("readReplicas saturated for 6s: CPU at "), warnings
