"""bench.scale's replica figures without a cluster: the memory model from a replica seeing nothing, one
serving every policy and several sharing the same fleet (hand-worked), and the per-replica table."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from bench.common import ROOT
from bench.scale.measure import SizeResult
from bench.scale.report import memory_fit, memory_model, replicas_table
from bench.scale.settings import parse_args


def result(policies: int, replicas: int, rss: float, **more: Any) -> SizeResult:
    values: dict[str, Any] = {f.name: math.nan for f in dataclasses.fields(SizeResult)}
    values.update(
        policies=policies,
        replicas=replicas,
        rss_end_mb=rss,
        batching="on",
        per_replica=[],
        profile=[],
        code="",
    )
    values.update(more)
    return SizeResult(**values)


def test_the_memory_model_splits_a_served_policys_cost_from_a_seen_ones() -> None:
    # Hand-worked: idle 100 MB; seen 10 KB, served 50 KB more. 3,072 policies: one replica holds
    # 100 + 3072 x 60/1024 = 280 MB; three holding 1,024 each: 100 + 30 + 50 = 180 MB.
    single = result(3072, 1, 280.0)
    each = {"served": 1024.0, "cores_busy": 0.1, "rss_end_mb": 180.0, "rss_peak_mb": 190.0}
    shared = result(3072, 3, 180.0, per_replica=[each, each, each])
    [line] = memory_model([single, shared], idle_mb=100.0)
    assert "60 KB a policy served" in line and "10 KB a policy only seen" in line
    assert "RSS ~ 100 MB + 10 KB x policies + 50 KB x served" in line


def test_fleets_of_two_sizes_tell_what_a_replica_pays_once_serving_from_what_a_seen_policy_costs() -> None:
    # Hand-worked: idle 100 MB; 20 MB once serving; seen 10 KB, served 50 KB more. 1,024 policies: one
    # replica 100 + 20 + 10 + 50 = 180 MB, two (512 each) 155; 3,072: one 300 MB, three (1,024 each) 200.
    def replicas(served: float, rss: float, n: int) -> list[dict[str, float]]:
        return [{"served": served, "cores_busy": 0.1, "rss_end_mb": rss, "rss_peak_mb": rss}] * n

    small = [result(1024, 1, 180.0), result(1024, 2, 155.0, per_replica=replicas(512, 155.0, 2))]
    large = [result(3072, 1, 300.0), result(3072, 3, 200.0, per_replica=replicas(1024, 200.0, 3))]
    [line] = memory_fit(small + large, idle_mb=100.0)
    assert "7 replicas over fleets of 1,024, 3,072 policies" in line
    assert "20 MB once serving, 10.0 KB a policy only seen (aim 10), 60.0 KB a policy served" in line
    assert "worst residual 0.0 MB" in line
    # One fleet alone cannot tell them apart: the model of one fleet counts the 20 MB as seen policies.
    [one_fleet] = memory_model(large, idle_mb=100.0)
    assert "17 KB a policy only seen" in one_fleet
    assert memory_fit(large, idle_mb=100.0) == []


def test_without_a_single_replica_beside_them_there_is_no_model() -> None:
    each = {"served": 10.0, "cores_busy": 0.1, "rss_end_mb": 180.0, "rss_peak_mb": 190.0}
    assert memory_model([result(30, 3, 180.0, per_replica=[each] * 3)], idle_mb=100.0) == []


def test_each_replica_is_set_beside_the_single_one_on_the_same_fleet() -> None:
    single = result(300, 1, 200.0, cores_busy=0.5)
    rows = [
        {"served": 100.0, "cores_busy": 0.2, "rss_end_mb": 80.0, "rss_peak_mb": 90.0},
        {"served": 200.0, "cores_busy": 0.3, "rss_end_mb": 100.0, "rss_peak_mb": 110.0},
    ]
    table = replicas_table([single, result(300, 2, 100.0, per_replica=rows)])
    assert "| 0 | 100 | 0.20 | 80 / 90 | 40%, 40% |" in table
    assert "| 1 | 200 | 0.30 | 100 / 110 | 60%, 50% |" in table


def test_with_two_checkouts_each_is_set_beside_its_own_single_replica() -> None:
    row = {"served": 100.0, "cores_busy": 0.2, "rss_end_mb": 80.0, "rss_peak_mb": 90.0}
    results = [
        result(300, 1, 200.0, cores_busy=0.5, code="aaaaaaa"),
        result(300, 1, 160.0, cores_busy=0.4, code="bbbbbbb"),
        result(300, 3, 80.0, per_replica=[row] * 3, code="bbbbbbb"),
    ]
    table = replicas_table(results)
    assert "(beside 1 replica: 0.40 cores, 160 MB)" in table[0]
    assert "| 0 | 100 | 0.20 | 80 / 90 | 50%, 50% |" in table


def test_the_checkouts_default_to_this_one_and_must_hold_the_operator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert parse_args([]).code == (ROOT,)
    with pytest.raises(SystemExit) as exc:
        parse_args(["--code", f"{ROOT},{tmp_path}"])
    assert exc.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("python -m bench.scale: --code") and str(tmp_path) in line


@pytest.mark.parametrize("replicas", ["0", "1,x", ""])
def test_bad_replica_counts_are_refused_in_one_line(
    replicas: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(["--replicas", replicas])
    assert exc.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("python -m bench.scale: ") and "--replicas" in line
