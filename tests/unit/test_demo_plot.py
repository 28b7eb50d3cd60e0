"""The pure parts of `make demo` (hack/demo_watch): the shortened policy, the load program, the Events it
parses, the live table and the plot. The cluster half is exercised by running `make demo`."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
import yaml

from bench.loadtest.cli import load_shape
from demo_watch.app import WORKER_CPU_REQUEST, demo_app
from demo_watch.load import (
    _PEAK,
    VIDEO_START,
    WEB_RAMP,
    WEB_SECONDS,
    WEB_START,
    load_program,
    offered_rate,
    phase_at,
    web_points,
)
from demo_watch.plot import latency_steps, plot
from demo_watch.policy import MIN_PERIOD_SECONDS, add_label_matcher, describe_shortening, shorten_policy
from demo_watch.sampling import at_rest, parse_scaled, tier_of_holding
from demo_watch.table import table_lines
from scalekeeper import model, report
from scalekeeper.engine.types import LimitedBy, TargetDecision, TargetHistory
from scalekeeper.kube.owners import OwnerRef
from scalekeeper.memory import PolicyMemory
from scalekeeper.tiers import tiers_of
from scalekeeper.tiers.workers import WorkerQueries, worker_queries
from tests.unit.scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


EXAMPLE = yaml.safe_load((ROOT / "manifests" / "examples" / "scalingpolicy-demo.yaml").read_text())


# ------------------------------------------------------------------------------------------- the policy


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            'sum(rate(demo_http_requests_total{app="web"}[30s]))',
            'sum(rate(demo_http_requests_total{app="web",namespace="demo"}[30s]))',
        ),
        ("sum(rate(demo_db_reads_total[30s]))", 'sum(rate(demo_db_reads_total{namespace="demo"}[30s]))'),
        ("up{}", 'up{namespace="demo"}'),
        (
            'a{x="1"} / on() b{y="2",}',
            'a{x="1",namespace="demo"} / on() b{y="2",namespace="demo"}',
        ),
        ('rate(x{namespace="other"}[1m])', 'rate(x{namespace="other"}[1m])'),  # already scoped: untouched
        ("max_over_time(rate(x[1m])[5m:30s])", 'max_over_time(rate(x{namespace="demo"}[1m])[5m:30s])'),
    ],
)
def test_add_label_matcher_narrows_every_selector(query: str, expected: str) -> None:
    assert add_label_matcher(query, "namespace", "demo") == expected


def test_the_demo_policy_is_the_example_with_every_window_divided_and_every_query_scoped() -> None:
    before = yaml.safe_dump(EXAMPLE)
    s = shorten_policy(EXAMPLE, "demo", 4)
    assert yaml.safe_dump(EXAMPLE) == before  # the example itself is not modified
    spec = model.parse_spec(s.policy["spec"])  # what is applied passes the operator's own validation

    assert spec.web is not None
    up, down = spec.web.behavior.scale_up, spec.web.behavior.scale_down
    assert (up.stabilization_window_seconds, up.policies[0].period_seconds, up.policies[0].value) == (
        15,
        15,
        50,
    )
    assert (down.stabilization_window_seconds, down.policies[0].period_seconds, down.policies[0].value) == (
        75,
        15,
        10,
    )
    # What the example does not change stays: bounds, targets, modes, the connection budget.
    assert (spec.web.min_replicas, spec.web.max_replicas, spec.mode, spec.interval_seconds) == (
        1,
        6,
        "Enforce",
        5,
    )
    assert s.policy["spec"]["connectionBudget"] == EXAMPLE["spec"]["connectionBudget"]

    workers = {w.queue: w for w in spec.workers or []}
    video = workers["video"]
    assert video.cooldown_seconds == 30 and video.min_replicas == 0 and video.max_replicas == 6
    assert video.behavior.scale_down.stabilization_window_seconds == 15
    # A tier without behavior gets the HPA defaults, shortened too: nothing waits the default 300 s.
    for w in (workers["emails"], workers["reports"]):
        assert w.behavior.scale_down.stabilization_window_seconds == 75
    assert spec.read_replicas is not None
    assert spec.read_replicas.behavior.scale_down.stabilization_window_seconds == 75

    every_period = [
        p.period_seconds
        for b in [spec.web.behavior, spec.read_replicas.behavior, *(w.behavior for w in workers.values())]
        for rules in (b.scale_up, b.scale_down)
        for p in rules.policies
    ]
    assert min(every_period) >= MIN_PERIOD_SECONDS

    queries = [spec.web.request_rate.query if spec.web.request_rate else "", spec.read_replicas.metric.query]
    for w in workers.values():
        queries += [q for q in vars(worker_queries(w, "demo")).values() if q is not None]
    assert len(queries) == 2 + len(fields(WorkerQueries)) * len(workers)
    for q in queries:
        assert re.search(r'namespace="demo"', q), q
        assert "<queue>" not in q
    assert 'queue="video",namespace="demo"' in worker_queries(video, "demo").waiting


def test_the_terminal_says_what_was_shortened_next_to_the_examples_numbers() -> None:
    lines = describe_shortening(shorten_policy(EXAMPLE, "demo", 4))
    text = "\n".join(lines)
    assert "web" in lines[0] and "up 50%/15s after 15s (50%/60s after 60s)" in lines[0]
    assert "down 10%/15s after 75s (10%/60s after 300s)" in lines[0]
    assert "to zero after 30s empty (120s)" in text
    assert len(lines) == 1 + len(EXAMPLE["spec"]["workers"]) + 1


# ------------------------------------------------------------------------------------------ load program


def test_locusts_points_offer_the_rates_the_plot_shows_as_offered() -> None:
    shape = load_shape()
    points = shape.parse_points(web_points())
    assert points[0] == (0.0, 0.0) and points[-1][0] == WEB_START + WEB_SECONDS  # locust ends there
    for tenth in range(int(points[-1][0] * 10)):  # every 0.1 s of the run, steps included
        t = tenth / 10
        assert shape.rate_at(points, t) == offered_rate(t), t
    assert shape.rate_at(points, WEB_START + WEB_SECONDS) is None
    assert shape.users_for(max(r for _, r in WEB_RAMP), 0.5) == 2 * _PEAK
    # locust started 3 s after the live view: the same rates, 3 s later on the view's clock
    assert offered_rate(WEB_START + 2.5, 3.0) == 0 and offered_rate(WEB_START + 3.0, 3.0) == WEB_RAMP[0][1]


def test_phase_names_what_the_load_program_does() -> None:
    steps = load_program()
    assert phase_at(0, steps).startswith("web starts in 15s")
    assert f"web {_PEAK} req/s offered" in phase_at(WEB_START + 100, steps)
    assert "publishing video tasks" in phase_at(VIDEO_START + 1, steps)
    assert phase_at(WEB_START + WEB_SECONDS + 1, steps) == "load stopped: draining"
    assert phase_at(WEB_START + WEB_SECONDS + 1, steps, web_shift=4.0).startswith("web 60 req/s offered")


def test_the_demo_app_is_the_rendered_one_with_only_the_workers_cpu_requests_trimmed() -> None:
    images = {
        "DEMO_IMAGE": "localhost:5001/scalekeeper-demo@sha256:" + "0" * 64,
        "EXPORTER_IMAGE": "localhost:5001/scalekeeper-celery-exporter@sha256:" + "1" * 64,
        "REDIS_IMAGE": "redis:7.0",
    }
    render = load_script("demo_render", ROOT / "manifests" / "examples" / "demo" / "render.py").render
    rendered = render(images, key_prefix="demo:")
    docs, notes = demo_app(images, "demo:")
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [
        (d["kind"], d["metadata"]["name"]) for d in rendered
    ]
    workers = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].startswith("worker-")]
    assert {d["metadata"]["name"] for d in workers} == {"worker-emails", "worker-video", "worker-reports"}
    assert len(notes) == len(workers)
    for d, r in zip(docs, rendered, strict=True):
        if d in workers:
            for c in d["spec"]["template"]["spec"]["containers"]:
                assert c["resources"]["requests"]["cpu"] == WORKER_CPU_REQUEST
            continue
        assert d == r  # everything else exactly as render.py makes it (web keeps the request its HPA uses)
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    assert config["data"]["KEY_PREFIX"] == "demo:"


# ------------------------------------------------------------------------------------------------ Events


def _announced(name: str, current: int, desired: int, limited: LimitedBy) -> str:
    """The message the operator itself writes for this decision (report._announce)."""
    out: list[tuple[str, str, str]] = []
    d = TargetDecision(
        current=current, desired=desired, limited_by=limited, reason="because", history=TargetHistory()
    )
    spec = model.parse_spec(EXAMPLE["spec"])
    tier = next(t for t in tiers_of(spec, OwnerRef("demo", "demo", "uid")) if t.name == name)
    report._announce(tier, d, PolicyMemory(), lambda *a: out.append(a), False)
    assert len(out) == 1
    return out[0][2]


def test_scaled_events_are_parsed_from_the_operators_own_wording() -> None:
    assert parse_scaled(_announced("web", 1, 3, LimitedBy.NONE)) == ("web", 1, 3)
    assert parse_scaled(_announced("worker/video", 6, 5, LimitedBy.NONE)) == ("worker/video", 6, 5)
    assert parse_scaled(_announced("readReplicas", 0, 4, LimitedBy.SCALE_UP_POLICY)) == (
        "readReplicas",
        0,
        4,
    )
    holding = _announced("worker/video", 6, 6, LimitedBy.MAX)
    assert parse_scaled(holding) is None
    assert tier_of_holding(holding) == "worker/video"


# --------------------------------------------------------------------------------------- table and rest


def _sample(**tiers: dict[str, Any]) -> dict[str, Any]:
    spec = shorten_policy(EXAMPLE, "demo", 4).policy["spec"]
    rest = {
        "web": {"replicas": 1, "ready": 1, "desired": 1, "floor": 1, "hpaDesired": 1, "max": 6},
        "worker/video": {"replicas": 0, "ready": 0, "desired": 0},
        "worker/emails": {"replicas": 1, "ready": 1, "desired": 1},
        "worker/reports": {"replicas": 1, "ready": 1, "desired": 1},
        "readReplicas": {"replicas": 1, "ready": 1, "desired": 1},
    }
    for name, t in tiers.items():
        rest[name.replace("_", "/")] = {**rest[name.replace("_", "/")], **t}
    return {"spec": spec, "tiers": rest, "load": {"rps": 0.0, "video_depth": 0.0}}


def test_at_rest_needs_every_tier_back_at_its_minimum_and_ready() -> None:
    assert at_rest(_sample())
    assert not at_rest(_sample(web={"floor": 2, "desired": 2}))
    assert not at_rest(_sample(web={"replicas": 2, "ready": 2}))  # the HPA has not followed the floor yet
    assert not at_rest(_sample(worker_video={"replicas": 1, "ready": 1}))
    assert not at_rest(_sample(readReplicas={"ready": 0}))
    busy = _sample()
    busy["load"]["video_depth"] = 3.0
    assert not at_rest(busy)
    assert not at_rest({"tiers": {}})


def test_the_table_has_one_row_per_tier_within_the_width() -> None:
    s = _sample(
        web={
            "replicas": 4,
            "ready": 3,
            "floor": 6,
            "desired": 6,
            "hpaDesired": 6,
            "limitedBy": "scaleUpPolicy",
            "reason": "request rate 80/s / 15 per replica = 6; " + "x" * 300,
        },
    )
    s["load"] = {"rps": 79.6, "video_depth": 52.0}
    s["latency"] = {"rel": 110.0, "seconds": 10.0, "requests": 790, "failures": 3, "p50": 9.0, "p95": 187.4}
    lines = table_lines(s, 130.0, "web 80 req/s offered", 100, color=False)
    assert len(lines) == 2 + 5
    assert all(len(line) <= 100 for line in lines)
    assert "79.6 req/s p95 187 ms (3 failed)" in lines[0] and "video queue 52" in lines[0]
    s["latency"] = None  # before locust's first interval
    assert "79.6 req/s  video queue" in table_lines(s, 130.0, "", 100, color=False)[0]
    web = next(line for line in lines if line.startswith("web "))
    assert "3/4" in web and "6/6/6" in web and "scaleUpPolicy" in web and "request rate 80/s" in web
    assert "\x1b[" not in "".join(lines)
    colored = table_lines(s, 130.0, "", 100, color=True)
    assert "\x1b[33m" in colored[2]  # web is not where it was told to be yet: yellow


def test_the_table_ends_with_the_bottleneck_condition() -> None:
    s = _sample()
    s["bottleneck"] = {"status": "True", "message": "web: at maxReplicas 2 while its demand needs 5"}
    lines = table_lines(s, 130.0, "", 100, color=False)
    assert lines[-1] == "BOTTLENECK     web: at maxReplicas 2 while its demand needs 5"
    assert "\x1b[31m" in table_lines(s, 130.0, "", 100, color=True)[-1]  # red
    s["bottleneck"] = {"status": "False", "message": "no target saturated for a while"}
    assert table_lines(s, 130.0, "", 100, color=False)[-1] == "BOTTLENECK     none"


# ----------------------------------------------------------------------------------------------- the plot


def test_latency_is_drawn_over_each_interval_with_a_gap_where_nothing_completed() -> None:
    latency = [
        {"rel": 3.0, "seconds": 10.0, "p95": None},
        {"rel": 13.0, "seconds": 10.0, "p95": 120.0},
        {"rel": 23.0, "seconds": 4.5, "p95": 80.0},
    ]
    xs, ys = latency_steps(latency, "p95")
    assert xs == [3.0, 13.0, 23.0, 23.0, 27.5]
    assert ys[0] != ys[0] and ys[1:] == [120.0, 120.0, 80.0, 80.0]  # nan: a gap


def test_the_plot_is_written_from_a_record(tmp_path: Path) -> None:
    start = 1_700_000_000.0
    samples = []
    for i in range(60):
        rel = i * 2.0
        n = 1 + min(5, i // 6)
        samples.append(
            {
                "rel": rel,
                "tiers": {
                    "web": {"replicas": n, "floor": n, "desired": n},
                    "worker/video": {"replicas": min(6, i // 4)},
                    "worker/emails": {"replicas": 1},
                    "readReplicas": {"replicas": 1 + i // 20},
                },
            }
        )
    record = {
        "start": start,
        "samples": samples,
        "events": [
            {
                "t": start + 30,
                "source": "policy",
                "reason": "Scaled",
                "message": "Scaled worker/video 0 -> 4: backlog",
            },
            {
                "t": start + 40,
                "source": "policy",
                "reason": "Holding",
                "message": "Holding worker/video at 6: max",
            },
            {
                "t": start + 41,
                "source": "hpa",
                "reason": "SuccessfulRescale",
                "message": "New size: 3; reason: x",
            },
        ],
        "load": {
            "rps": [(start + i, float(i % 80)) for i in range(0, 120, 2)],
            "video_depth": [(start + i, float(max(0, 60 - i))) for i in range(0, 120, 2)],
        },
    }
    record["latency"] = [
        {"rel": 3.0 + 10 * k, "seconds": 10.0, "requests": 0 if k == 0 else 300, "failures": k % 3}
        | ({"p50": None, "p95": None} if k == 0 else {"p50": 10.0 + k, "p95": 100.0 + 20 * k})
        for k in range(12)
    ]
    record["web_shift"] = 3.0
    out = tmp_path / "demo.png"
    plot(record, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    # Without any load series (Prometheus unreachable) nor locust's intervals it still draws the replicas.
    record["load"], record["latency"] = {}, []
    plot(record, tmp_path / "empty.png")
    assert (tmp_path / "empty.png").stat().st_size > 10_000
