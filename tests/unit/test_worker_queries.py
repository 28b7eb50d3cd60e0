"""A worker's queries: templates filled with the app and the queue, each escaped for a PromQL string, and the
overrides a policy writes winning over the defaults."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalekeeper.kube.owners import OwnerRef
from scalekeeper.metrics.promql import fill_template, string_escape
from scalekeeper.model import WorkerSpec
from scalekeeper.tiers.workers import IN_FLIGHT, WAITING, WorkerTier, worker_queries


def worker(**metrics: str) -> WorkerSpec:
    data: dict[str, Any] = {"queue": "emails", "deployment": "w", "maxReplicas": 3, "drainSeconds": 60}
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
    assert all('app="billing",queue="emails"' in query for query in vars(q).values()), q


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
