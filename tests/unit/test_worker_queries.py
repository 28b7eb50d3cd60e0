"""A worker's queries: templates filled with the app and the queue, each escaped for a PromQL string, the
preset's templates by default, and the overrides a policy writes winning query by query."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalekeeper.kube.owners import OwnerRef
from scalekeeper.metrics.presets import PRESETS, Preset
from scalekeeper.metrics.promql import fill_template, runtime_scv, string_escape
from scalekeeper.model import WorkerSpec
from scalekeeper.tiers.workers import (
    ARRIVAL_RATE,
    COMPLETION_RATE,
    IN_FLIGHT,
    SERVICE_SCV,
    SERVICE_SECONDS,
    WAITING,
    WorkerQueries,
    WorkerTier,
    worker_params,
    worker_queries,
)


def worker(drain: bool = True, wait: bool = False, **metrics: str) -> WorkerSpec:
    data: dict[str, Any] = {"queue": "emails", "deployment": "w", "maxReplicas": 3, "tasksPerWorker": 5}
    if drain:
        data["drainSeconds"] = 60
    if wait:
        data["targetWaitSeconds"] = 30
    if metrics:
        data["metrics"] = metrics
    return WorkerSpec.model_validate(data)


# (template, app, queue, filled), worked by hand.
FILLED = [
    ('x{app="<app>",queue="<queue>"}', "shop", "emails", 'x{app="shop",queue="emails"}'),
    ("<queue><queue><app>", "a", "q", "qqa"),
    ('x{queue="<queue>"}', "shop", 'we"ird', 'x{queue="we\\"ird"}'),
    ('x{app="<app>"}', "back\\slash", "q", 'x{app="back\\\\slash"}'),
    ('x{app="<app>"}', "two\nlines", "q", 'x{app="two\\nlines"}'),
    # One pass: a name holding a placeholder's text is not filled in again.
    ('x{app="<app>",queue="<queue>"}', "<queue>", "<app>", 'x{app="<queue>",queue="<app>"}'),
    ("<APP> <Queue> <ap p>", "a", "q", "<APP> <Queue> <ap p>"),  # only the exact spellings
    ("no placeholder", "a", "q", "no placeholder"),
]


@pytest.mark.parametrize(("template", "app", "queue", "filled"), FILLED)
def test_fill_template(template: str, app: str, queue: str, filled: str) -> None:
    assert fill_template(template, app=app, queue=queue) == filled


names = st.text(min_size=1, max_size=30)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


@given(names, names, st.lists(st.sampled_from(["<app>", "<queue>", "x", '"', "\\", " "]), max_size=12))
def test_filled_names_read_back_as_written(app: str, queue: str, parts: list[str]) -> None:
    template = "".join(parts)
    filled = fill_template(f'{{app="<app>",queue="<queue>"}}{template}', app=app, queue=queue)
    # The labels' string literals end at the first unescaped quote and read back as the names themselves.
    m = re.match(r'\{app="((?:[^"\\]|\\.)*)",queue="((?:[^"\\]|\\.)*)"\}', filled)
    assert m is not None, filled
    assert (_unescape(m.group(1)), _unescape(m.group(2))) == (app, queue)
    names_ = {"<app>": string_escape(app), "<queue>": string_escape(queue)}
    assert filled[m.end() :] == "".join(names_.get(p, p) for p in parts)


def test_the_app_is_the_policys_name_unless_metrics_app_says_otherwise() -> None:
    assert worker_queries(worker(), "shop").waiting == 'celery_queue_waiting_tasks{app="shop",queue="emails"}'
    named = worker(app="billing")
    q = worker_queries(named, "shop")
    per_queue = [query for field, query in vars(q).items() if field != "executing_per_pod"]
    assert all('app="billing",queue="emails"' in query for query in per_queue), q
    assert q.executing_per_pod == 'sum by (pod) (celery_worker_executing_tasks{app="billing"})'


def test_overrides_win_query_by_query_and_may_use_both_placeholders() -> None:
    q = worker_queries(worker(waiting='sum(my_waiting{job="<app>-<queue>"})', app='a"b'), "shop")
    assert q.waiting == 'sum(my_waiting{job="a\\"b-emails"})'
    assert q.in_flight == 'celery_queue_inflight_tasks{app="a\\"b",queue="emails"}'
    assert q.arrival_rate == 'rate(celery_queue_published_total{app="a\\"b",queue="emails"}[1m])'


def test_the_worker_tier_fills_in_its_policys_name() -> None:
    tier = WorkerTier(OwnerRef("ns", "shop", "uid"), worker())
    queries = tier.queries()
    assert queries[WAITING] == 'celery_queue_waiting_tasks{app="shop",queue="emails"}'
    assert queries[IN_FLIGHT] == 'celery_queue_inflight_tasks{app="shop",queue="emails"}'


# Each preset's queries for app shop, queue emails, written out by hand.
CRP_ENDED = 'state=~"succeeded|failed|retries-exceeded|retried"'
PRESET_QUERIES = {
    Preset.SCALEKEEPER: WorkerQueries(
        waiting='celery_queue_waiting_tasks{app="shop",queue="emails"}',
        in_flight='celery_queue_inflight_tasks{app="shop",queue="emails"}',
        arrival_rate='rate(celery_queue_published_total{app="shop",queue="emails"}[1m])',
        completion_rate='rate(celery_queue_completed_total{app="shop",queue="emails"}[1m])',
        service_seconds='sum(rate(celery_queue_task_runtime_seconds_sum{app="shop",queue="emails"}[5m])) / '
        'sum(rate(celery_queue_task_runtime_seconds_count{app="shop",queue="emails"}[5m]))',
        service_scv=runtime_scv('celery_queue_task_runtime_seconds_bucket{app="shop",queue="emails"}'),
        executing_per_pod='sum by (pod) (celery_worker_executing_tasks{app="shop"})',
    ),
    Preset.CELERY_REDIS_PROMETHEUS: WorkerQueries(
        waiting='celery_queue_length{queue="emails"}',
        in_flight='clamp_min((sum(celery_tasks_total{queue="emails",state="started"}) or vector(0)) - '
        f'(sum(celery_tasks_total{{queue="emails",{CRP_ENDED}}}) or vector(0)), 0)',
        arrival_rate=None,
        completion_rate='sum(rate(celery_tasks_total{queue="emails",state=~"succeeded|failed|retries-exceeded"}'
        "[1m])) or vector(0)",
        service_seconds='sum(rate(celery_task_runtime_seconds_sum{queue="emails"}[5m])) / '
        'sum(rate(celery_task_runtime_seconds_count{queue="emails"}[5m]))',
        service_scv=runtime_scv('celery_task_runtime_seconds_bucket{queue="emails"}'),
        executing_per_pod=None,
    ),
}


def test_every_preset_is_written_out() -> None:
    assert set(PRESET_QUERIES) == set(Preset) == set(PRESETS)


@pytest.mark.parametrize("preset", list(Preset))
def test_a_preset_gives_its_queries(preset: Preset) -> None:
    arrival = {} if PRESETS[preset].arrival_rate else {"arrivalRate": "published"}
    got = worker_queries(worker(preset=preset, **arrival), "shop")
    expected = PRESET_QUERIES[preset]
    assert got == replace(expected, arrival_rate=expected.arrival_rate or "published")
    # Both average completions over a minute, as the engine's default window assumes.
    assert worker_params(worker(preset=preset, **arrival)).rate_window_seconds == 60


def test_no_metrics_is_the_scalekeeper_preset() -> None:
    assert worker_queries(worker(), "shop") == PRESET_QUERIES[Preset.SCALEKEEPER]


FIELDS = {
    "waiting": "waiting",
    "inFlight": "in_flight",
    "arrivalRate": "arrival_rate",
    "completionRate": "completion_rate",
    "serviceSeconds": "service_seconds",
    "serviceScv": "service_scv",
    "executingPerPod": "executing_per_pod",
}


@given(
    st.sampled_from(list(Preset)),
    st.dictionaries(st.sampled_from(list(FIELDS)), st.text(min_size=1, max_size=20).filter(str.strip)),
)
def test_overrides_win_query_by_query(preset: Preset, overrides: dict[str, str]) -> None:
    written = {**overrides, "preset": preset, "app": "shop"}
    if PRESETS[preset].arrival_rate is None:
        written.setdefault("arrivalRate", "published")
    got = worker_queries(worker(**written), "other")
    for field, attr in FIELDS.items():
        query = getattr(got, attr)
        if field in written:
            assert query == fill_template(written[field], app="shop", queue="emails")
        else:
            assert query == getattr(PRESET_QUERIES[preset], attr)


def test_without_drain_seconds_a_preset_without_arrivals_asks_for_none() -> None:
    owner = OwnerRef("ns", "shop", "uid")
    crp = PRESET_QUERIES[Preset.CELERY_REDIS_PROMETHEUS]
    tier = WorkerTier(owner, worker(drain=False, preset=Preset.CELERY_REDIS_PROMETHEUS))
    assert tier.queries() == {WAITING: crp.waiting, IN_FLIGHT: crp.in_flight}
    drains = WorkerTier(owner, worker(preset=Preset.CELERY_REDIS_PROMETHEUS, arrivalRate="sum(published)"))
    assert drains.queries() == {
        WAITING: crp.waiting,
        IN_FLIGHT: crp.in_flight,
        ARRIVAL_RATE: "sum(published)",
        COMPLETION_RATE: crp.completion_rate,
    }


def test_the_objective_reads_the_arrival_rate_and_the_runtime() -> None:
    owner = OwnerRef("ns", "shop", "uid")
    sk = PRESET_QUERIES[Preset.SCALEKEEPER]
    tier = WorkerTier(owner, worker(drain=False, wait=True))
    assert tier.queries() == {
        WAITING: sk.waiting,
        IN_FLIGHT: sk.in_flight,
        ARRIVAL_RATE: sk.arrival_rate,
        SERVICE_SECONDS: sk.service_seconds,
        SERVICE_SCV: sk.service_scv,
    }


def test_the_runtime_scv_weighs_quantiles_that_cover_the_distribution_once() -> None:
    query = runtime_scv('h_bucket{q="a"}', "2m")
    found = re.findall(
        r"([0-9.]+) \* histogram_quantile\(([0-9.]+), sum by \(le\) \(rate\(h_bucket\{q=\"a\"\}\[2m\]\)\)\)",
        query,
    )
    first, second = found[: len(found) // 2], found[len(found) // 2 :]
    assert first == second  # the same quantiles and weights in both moments
    weights = [float(w) for w, _ in first]
    quantiles = [float(q) for _, q in first]
    assert sum(weights) == pytest.approx(1.0)
    assert quantiles == sorted(quantiles) and quantiles[0] > 0 and quantiles[-1] < 1
    # Each quantile sits inside the share of the distribution it stands for.
    edge = 0.0
    for w, q in zip(weights, quantiles, strict=True):
        assert edge < q < edge + w + 1e-9
        edge += w
