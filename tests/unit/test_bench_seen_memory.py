"""bench.seen_memory's inputs and arithmetic (its figures are the benchmark's, not a test's)."""

from __future__ import annotations

import json

import pytest

from bench.seen_memory import (
    bodies_of,
    list_pages,
    load_bodies,
    main,
    per_policy_kb,
    status_writes,
)
from scalekeeper.kube.informer import PAGE_SIZE


def test_every_object_is_the_captured_body_under_a_name_and_uid_of_its_own() -> None:
    templates = load_bodies()
    deployments = [json.loads(b) for b in bodies_of(templates, "deployment", 3)]
    names = [(d["metadata"]["namespace"], d["metadata"]["name"]) for d in deployments]
    assert len(names) == 15 and len(set(names)) == 15
    assert len({d["metadata"]["uid"] for d in deployments}) == 15
    assert ("bench-seen-1", "sp-00001-worker-2") in names
    [policy] = [json.loads(b) for b in bodies_of(templates, "policy", 1)]
    # The policy names its own workloads, renamed with it.
    assert "sp-00000-web" in json.dumps(policy["spec"])
    assert policy["metadata"]["managedFields"], "bodies as the API server sends them"


def test_the_list_comes_in_pages_linked_by_continue_tokens() -> None:
    pages = [json.loads(p) for p in list_pages(bodies_of(load_bodies(), "deployment", 30))]
    assert [len(p["items"]) for p in pages] == [PAGE_SIZE, 150 - PAGE_SIZE]
    assert pages[0]["metadata"]["continue"] == "1" and "continue" not in pages[1]["metadata"]


def test_each_round_writes_every_policys_status_at_a_newer_version() -> None:
    reads = status_writes(load_bodies(), 250, rounds=2)
    events = [json.loads(line) for read in reads for line in read.decode().splitlines()]
    assert len(events) == 500 and {e["type"] for e in events} == {"MODIFIED"}
    first, again = events[0]["object"], events[250]["object"]
    assert first["metadata"]["uid"] == again["metadata"]["uid"]
    assert (first["status"]["round"], again["status"]["round"]) == (0, 1)
    assert int(again["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])


def test_the_cost_a_policy_is_the_slope_between_sizes() -> None:
    rows = [{"policies": 1000.0, "resident_mb": 40.0}, {"policies": 3000.0, "resident_mb": 60.0}]
    assert per_policy_kb(rows, "resident_mb", 0) == pytest.approx(40.96)  # fixed costs in
    assert per_policy_kb(rows, "resident_mb", 1) == pytest.approx(10.24)


@pytest.mark.parametrize("argv", [["--sizes", "0"], ["--sizes", "x"], ["--rounds", "-1"]])
def test_bad_arguments_are_refused_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("python -m bench.seen_memory: ")
