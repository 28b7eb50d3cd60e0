"""bench.scale's fleets without a cluster: every shape's policies are specs the operator accepts, naming
exactly the targets the fleet creates, and the decision log counts one line per policy cycle."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bench.scale.fleet import policy_body, statefulset_body, workloads
from bench.scale.operator_process import DecisionLog
from bench.scale.settings import FULL, LIGHT, FleetShape, parse_args
from scalekeeper.model.policy import parse_spec


@pytest.mark.parametrize("shape", [FULL, LIGHT], ids=lambda s: s.name)
def test_each_policy_names_the_targets_its_fleet_creates(shape: FleetShape) -> None:
    body = policy_body(7, "r1", 15, shape)
    spec = parse_spec(body["spec"])
    named = (
        {(spec.read_replicas.target.kind, spec.read_replicas.target.name)} if spec.read_replicas else set()
    )
    if spec.web is not None:
        named.add(("Deployment", spec.web.deployment))
    named |= {("Deployment", w.deployment) for w in spec.workers or []}
    assert named == set(workloads("sp-00007", shape))
    # Every series the policy reads is one the fleet's exporter serves for it.
    text = repr(body["spec"])
    read = re.findall(r'bench_load\{run="r1",policy="sp-00007",metric="([^"]+)"\}', text)
    assert sorted(read) == sorted(shape.metrics)


def test_the_light_fleet_sizes_one_statefulset_on_one_series() -> None:
    spec = parse_spec(policy_body(3, "r1", 15, LIGHT)["spec"])
    assert spec.web is None and not spec.workers and spec.read_replicas is not None
    assert spec.read_replicas.target.kind == "StatefulSet"
    assert LIGHT.metrics == ("read",) and len(FULL.metrics) == 8
    sts = statefulset_body("sp-00003-read", "r1", "img")
    assert sts["kind"] == "StatefulSet" and sts["spec"]["replicas"] == 0
    assert sts["spec"]["serviceName"] == "sp-00003-read"


def test_the_fleet_option_picks_the_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bench.scale.settings.cluster_env", lambda: {"KUBECONFIG": "/k"})
    assert parse_args(["--fleet", "light"]).shape is LIGHT
    assert parse_args([]).shape is FULL


def decision(policy: str, target: str) -> str:
    return json.dumps(
        {"timestamp": "2026-12-06T10:00:00+00:00", "message": "decision", "policy": policy, "target": target}
    )


@pytest.mark.parametrize("shape", [FULL, LIGHT], ids=lambda s: s.name)
def test_one_evaluation_per_cycle_whatever_tiers_log(tmp_path: Path, shape: FleetShape) -> None:
    log = DecisionLog(tmp_path / "log", shape.cycle_target)
    for target in ("web", "readReplicas", "worker-q0"):
        log._take(decision("ns/sp-00001", target))
    assert {p: len(ts) for p, ts in log.evaluations.items()} == {"ns/sp-00001": 1}
