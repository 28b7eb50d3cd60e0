"""PromQL of a workload's CPU and memory use against its containers' limits, from the kubelet's cAdvisor
series: `irate(container_cpu_usage_seconds_total[1m])` over `container_spec_cpu_quota /
container_spec_cpu_period`, and `container_memory_working_set_bytes` over `container_spec_memory_limit_bytes`.
Read in the policy's batch for the bottleneck signals only (engine/bottleneck.py): a Prometheus without these
series, or containers without limits, answer no series, and the resource signals are then not evaluated;
sizing never reads them.
"""

from __future__ import annotations

from .promql import string_escape

CPU_OF_LIMIT = "cpu_of_limit"
MEMORY_OF_LIMIT = "memory_of_limit"
RESOURCE_METRICS = (CPU_OF_LIMIT, MEMORY_OF_LIMIT)

# The alphabet of the suffixes Kubernetes generates (k8s.io/apimachinery/pkg/util/rand): a Deployment's pods
# are `<name>-<pod-template-hash, up to 10>-<5>`, so a Deployment whose name extends this one's
# (`web-api` beside `web`) has one segment more and does not match.
_GENERATED = "[bcdfghjklmnpqrstvwxz2456789]"
# Summed over the containers that have a limit; the pod's own cgroup (no container label) and a sandbox
# (`POD`) are not containers.
_CONTAINERS = 'container!="",container!="POD"'
_MATCH = "on (namespace, pod, container)"
# irate, the last two of cAdvisor's readings (10-15 s apart) in this window: rate() divides by the whole
# window, so it would read a pod started within it as partly idle for its first minute.
RATE_WINDOW = "1m"


def pod_pattern(kind: str, name: str) -> str | None:
    """An RE2 pattern of exactly the pod names of a workload's pods (None: a kind whose pods are not named
    after it in a known way, say a database operator's cluster: not evaluated)."""
    escaped = name.replace(".", "\\.")
    if kind == "Deployment":
        return f"{escaped}-{_GENERATED}{{1,10}}-{_GENERATED}{{5}}"
    if kind == "StatefulSet":
        return f"{escaped}-[0-9]+"
    return None


def resource_queries(kind: str, namespace: str, name: str) -> dict[str, str]:
    """The workload's CPU and memory use as a share of its containers' limits (1.0: at the limit)."""
    pattern = pod_pattern(kind, name)
    if pattern is None:
        return {}
    pods = f'namespace="{string_escape(namespace)}",pod=~"{string_escape(pattern)}",{_CONTAINERS}'

    def series(metric: str) -> str:
        return f"{metric}{{{pods}}}"

    quota = series("container_spec_cpu_quota")
    limit = f"({series('container_spec_memory_limit_bytes')} > 0)"  # 0: no limit
    cpu = (
        f"sum(irate({series('container_cpu_usage_seconds_total')}[{RATE_WINDOW}]) and {_MATCH} {quota})"
        f" / sum({quota} / {_MATCH} {series('container_spec_cpu_period')})"
    )
    memory = f"sum({series('container_memory_working_set_bytes')} and {_MATCH} {limit}) / sum({limit})"
    return {CPU_OF_LIMIT: cpu, MEMORY_OF_LIMIT: memory}
