"""metrics/saturation.py: the pods a workload's resource queries select, and the cAdvisor series they read."""

from __future__ import annotations

import re

import pytest

from scalekeeper.metrics.saturation import CPU_OF_LIMIT, MEMORY_OF_LIMIT, pod_pattern, resource_queries

# (kind, workload, pod, selected): pod names as the ReplicaSet and StatefulSet controllers make them.
PODS = [
    ("Deployment", "web", "web-7858bb66f9-njg6h", True),
    ("Deployment", "web", "web-5fb998f747-vssv5", True),
    ("Deployment", "web", "web-api-7858bb66f9-njg6h", False),  # another Deployment, named after this one
    ("Deployment", "web", "web-0", False),
    ("Deployment", "web", "web-7858bb66f9-njg6", False),  # a suffix is five characters
    ("Deployment", "web", "web-7858bb66f9-NJG6H", False),
    ("Deployment", "shop.web", "shop.web-7858bb66f9-njg6h", True),
    ("Deployment", "shop.web", "shopxweb-7858bb66f9-njg6h", False),  # a dot is a dot
    ("StatefulSet", "replica", "replica-0", True),
    ("StatefulSet", "replica", "replica-12", True),
    ("StatefulSet", "replica", "replica-extra-0", False),
    ("StatefulSet", "replica", "replica-7858bb66f9-njg6h", False),
]


@pytest.mark.parametrize(("kind", "workload", "pod", "selected"), PODS)
def test_the_pattern_selects_exactly_the_workloads_pods(
    kind: str, workload: str, pod: str, selected: bool
) -> None:
    pattern = pod_pattern(kind, workload)
    assert pattern is not None
    # PromQL anchors a label regex at both ends, as fullmatch does (RE2 and Python agree on this subset).
    assert bool(re.fullmatch(pattern, pod)) is selected


def test_a_kind_whose_pods_are_not_named_after_it_is_not_evaluated() -> None:
    assert pod_pattern("Cluster", "pg") is None
    assert resource_queries("Cluster", "shop", "pg") == {}


def test_the_queries_read_use_against_limits_from_cadvisor() -> None:
    queries = resource_queries("Deployment", "shop", "web")
    cpu, memory = queries[CPU_OF_LIMIT], queries[MEMORY_OF_LIMIT]
    for series in (
        "container_cpu_usage_seconds_total",
        "container_spec_cpu_quota",
        "container_spec_cpu_period",
    ):
        assert series in cpu
    for series in ("container_memory_working_set_bytes", "container_spec_memory_limit_bytes"):
        assert series in memory
    assert 'namespace="shop"' in cpu and 'pod=~"web-' in cpu and 'container!="POD"' in memory
    assert "> 0" in memory  # an unlimited container reports a limit of 0: left out
