"""Hypothesis strategies for valid ScalingPolicy specs (camelCase, as a user writes them), shared by the
model's round-trip test and the CRD's agreement test, so both draw from the same space."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from scalekeeper.metrics.presets import PRESETS, Preset
from scalekeeper.model import generated_name_suffix

names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
queries = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda q: q.strip("\t\n\f\r ") != ""
)
positive = st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def policies(draw: st.DrawFn, percent_max: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(1, 3))):
        type_ = draw(st.sampled_from(["Pods", "Percent"]))
        value = draw(st.integers(1, percent_max if type_ == "Percent" else 10_000))
        out.append({"type": type_, "value": value, "periodSeconds": draw(st.integers(1, 1800))})
    return out


@st.composite
def rules(draw: st.DrawFn, percent_max: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["stabilizationWindowSeconds"] = draw(st.integers(0, 3600))
    if draw(st.booleans()):
        out["selectPolicy"] = draw(st.sampled_from(["Max", "Min", "Disabled"]))
    if draw(st.booleans()):
        out["policies"] = draw(policies(percent_max))
    return out


@st.composite
def behaviors(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["scaleUp"] = draw(rules(1000))
    if draw(st.booleans()):
        out["scaleDown"] = draw(rules(100))
    if draw(st.booleans()):
        out["tolerance"] = draw(st.floats(0, 1))
    for key in ("scaleDownDelaySeconds", "cooldownSeconds"):
        if draw(st.booleans()):
            out[key] = draw(st.integers(0, 3600))
    return out


@st.composite
def min_max(draw: st.DrawFn, low: int) -> tuple[int, int]:
    lo = draw(st.integers(low, 50))
    return lo, draw(st.integers(max(lo, 1), 100))


@st.composite
def webs(draw: st.DrawFn) -> dict[str, Any]:
    lo, hi = draw(min_max(1))
    out: dict[str, Any] = {"deployment": draw(names), "minReplicas": lo, "maxReplicas": hi}
    metrics = draw(st.sets(st.sampled_from(["cpu", "memory", "rate"]), min_size=1))
    if "cpu" in metrics:
        out["cpuUtilization"] = draw(st.integers(1, 100))
    if "memory" in metrics:
        out["memoryUtilization"] = draw(st.integers(1, 100))
    if "rate" in metrics:
        out["requestRate"] = {"query": draw(queries), "perReplica": draw(positive)}
    if draw(st.booleans()):
        out["behavior"] = draw(behaviors())
    return out


@st.composite
def workers(draw: st.DrawFn, queue: str) -> dict[str, Any]:
    lo, hi = draw(min_max(0))
    out: dict[str, Any] = {"queue": queue, "minReplicas": lo, "maxReplicas": hi}
    if draw(st.booleans()):
        out["deployment"] = draw(names)
    else:
        pod: dict[str, Any] = {"containers": [{"name": draw(names), "image": draw(names)}]}
        pod.update(draw(st.dictionaries(names.filter(lambda n: n != "containers"), names, max_size=2)))
        out["template"] = {"spec": pod}
        if draw(st.booleans()):
            out["template"]["metadata"] = {"labels": draw(st.dictionaries(names, names, max_size=2))}
    targets = draw(st.sets(st.sampled_from(["tasks", "drain"]), min_size=1))
    if "tasks" in targets:
        out["tasksPerWorker"] = draw(st.integers(1, 10_000))
    if "drain" in targets:
        out["drainSeconds"] = draw(st.integers(1, 86400))
    for key, lo_, hi_ in (
        ("activationTasks", 1, 1000),
        ("concurrency", 1, 1000),
        ("prefetchMultiplier", 1, 1000),
    ):
        if draw(st.booleans()):
            out[key] = draw(st.integers(lo_, hi_))
    if draw(st.booleans()):
        keys = st.sampled_from(["waiting", "inFlight", "arrivalRate", "completionRate"])
        out["metrics"] = draw(st.dictionaries(keys, queries))
        if draw(st.booleans()):
            out["metrics"]["app"] = draw(st.text(min_size=1, max_size=253))
        if draw(st.booleans()):
            out["metrics"]["preset"] = preset = draw(st.sampled_from([p.value for p in Preset]))
            if "drain" in targets and PRESETS[Preset(preset)].arrival_rate is None:
                out["metrics"].setdefault("arrivalRate", draw(queries))
    if draw(st.booleans()):
        out["cooldownSeconds"] = draw(st.integers(0, 86400))
    if draw(st.booleans()):
        out["behavior"] = draw(behaviors())
    return out


@st.composite
def replicas(draw: st.DrawFn) -> dict[str, Any]:
    lo, hi = draw(min_max(0))
    out: dict[str, Any] = {
        "target": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": draw(names)},
        "minReplicas": lo,
        "maxReplicas": hi,
        "metric": {"query": draw(queries), "perReplica": draw(positive)},
    }
    if draw(st.booleans()):
        out["floor"] = draw(st.integers(lo, hi))
    if draw(st.booleans()):
        out["replicasPath"] = draw(st.sampled_from(["spec.instances", "spec.postgresql.numberOfInstances"]))
    if draw(st.booleans()):
        out["behavior"] = draw(behaviors())
    return out


def one_tier_per_workload(spec: dict[str, Any]) -> None:
    """Give a worker whose Deployment another tier names (or whose generated one folds to another's) one of
    its own: valid specs size each workload from one tier."""
    used = {spec["web"]["deployment"]} if "web" in spec else set()
    suffixes: set[str] = set()
    for i, worker in enumerate(spec["workers"]):
        if "template" in worker:
            suffix = generated_name_suffix(worker["queue"])
            if suffix not in suffixes:
                suffixes.add(suffix)
                continue
            del worker["template"]
            worker["deployment"] = f"worker-{i}"
        while worker["deployment"] in used:
            worker["deployment"] += "-x"
        used.add(worker["deployment"])


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    sections = draw(st.sets(st.sampled_from(["web", "workers", "readReplicas"]), min_size=1))
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["mode"] = draw(st.sampled_from(["Enforce", "DryRun"]))
    if draw(st.booleans()):
        out["intervalSeconds"] = draw(st.integers(1, 3600))
    if "web" in sections:
        out["web"] = draw(webs())
    if "workers" in sections:
        queues = draw(st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=4, unique=True))
        out["workers"] = [draw(workers(q)) for q in queues]
        one_tier_per_workload(out)
    if "readReplicas" in sections:
        out["readReplicas"] = draw(replicas())
    if draw(st.booleans()):
        max_conn = draw(st.integers(1, 10_000))
        out["connectionBudget"] = {
            "maxConnections": max_conn,
            "webPoolSize": draw(st.integers(0, 100)),
            "workerPoolSize": draw(st.integers(0, 100)),
            "reserved": draw(st.integers(0, max_conn - 1)),
        }
    return out
