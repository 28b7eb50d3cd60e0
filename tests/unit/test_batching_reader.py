"""The reader's batching across policies (metrics/prometheus.py, metrics/gather.py) against a fake session:
what each concurrent read gets, how many POSTs go out, and what a bad or slow query costs the others.
The real Prometheus path is every cluster test's cycle."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scalekeeper.metrics.batching import DEFAULT_LIMITS, Limits
from scalekeeper.metrics.gather import Gatherer
from scalekeeper.metrics.prometheus import BatchResult, Missing, PrometheusReader, Sample

URL = "http://prometheus.test:9090"
# A batch's value part: the query summed, tagged with its index (metrics/promql.py batch).
_VALUE_PART = re.compile(r'label_replace\(sum\((\w+)\), "sk_key", "(\d+)", "", ""\)')


class _Answer:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self.text = json.dumps(body)
        self._body = body

    def json(self) -> Any:
        return self._body


class FakeSession:
    """Answers like Prometheus's /api/v1/query for queries named `m<value>`: any expression holding a
    `bad...` query is a parse error (HTTP 400, the whole expression fails); one holding `slow...` times
    out."""

    def __init__(self, fail: Exception | None = None, status: int = 200) -> None:
        self.posts: list[dict[str, str]] = []
        self._fail, self._status = fail, status
        self._lock = threading.Lock()

    def post(self, url: str, *, data: dict[str, str], headers: Mapping[str, str], timeout: float) -> _Answer:
        assert url == f"{URL}/api/v1/query" and timeout == 2.0
        with self._lock:
            self.posts.append(data)
        expression = data["query"]
        if self._fail is not None:
            raise self._fail
        if self._status != 200:
            return _Answer(self._status, {"status": "error", "error": "forbidden"})
        if "bad" in expression:
            return _Answer(400, {"status": "error", "errorType": "bad_data", "error": "parse error"})
        if "slow" in expression:
            raise requests.ReadTimeout("read timed out")
        at = float(data["time"])
        result = [
            {"metric": {"sk_key": index}, "value": [at, query.removeprefix("m")]}
            for query, index in _VALUE_PART.findall(expression)
        ]
        return _Answer(200, {"status": "success", "data": {"resultType": "vector", "result": result}})


def reader(session: FakeSession, *, reads: int, limits: Limits = DEFAULT_LIMITS) -> PrometheusReader:
    seen: list[tuple[int, int]] = []
    r = PrometheusReader(
        URL,
        timeout=2.0,
        clock=lambda: 1000.0,
        # Long: the reads of a test all join one gathering, which closes as the last one arrives.
        window=60.0,
        limits=limits,
        most_reads=reads,
        on_request=lambda queries, policies: seen.append((queries, policies)),
    )
    r.session = session  # type: ignore[assignment]
    r.seen = seen  # type: ignore[attr-defined]
    return r


def read_together(r: PrometheusReader, reads: list[dict[str, str]]) -> list[BatchResult[str]]:
    with ThreadPoolExecutor(len(reads)) as pool:
        return list(pool.map(r.read, reads))


def values(result: BatchResult[str]) -> dict[str, float | str]:
    return {
        k: v.value if isinstance(v, Sample) else f"missing: {v.reason}" for k, v in result.readings.items()
    }


def test_reads_that_arrive_together_share_one_post_and_each_gets_only_its_own() -> None:
    session = FakeSession()
    r = reader(session, reads=3)
    results = read_together(r, [{"a": "m1", "b": "m2"}, {"a": "m3"}, {"c": "m4", "a": "m5"}])
    assert [values(x) for x in results] == [{"a": 1, "b": 2}, {"a": 3}, {"c": 4, "a": 5}]
    assert len(session.posts) == 1 and session.posts[0]["time"] == "1000.000"
    assert sum(x.requests for x in results) == 1  # counted once, by the read that sent it
    assert r.seen == [(5, 3)]  # type: ignore[attr-defined]


def test_without_a_window_each_read_is_its_own_request() -> None:
    session = FakeSession()
    r = PrometheusReader(URL, timeout=2.0, clock=lambda: 1000.0)
    r.session = session  # type: ignore[assignment]
    assert values(r.read({"a": "m1"})) == {"a": 1} and values(r.read({"a": "m2"})) == {"a": 2}
    assert len(session.posts) == 2


def test_a_bad_query_costs_the_others_nothing_and_its_read_goes_alone_next_cycle() -> None:
    session = FakeSession()
    r = reader(session, reads=3)
    reads = [{"a": "m1", "b": "m2"}, {"a": "bad", "b": "m3"}, {"a": "m4"}]
    first = read_together(r, reads)
    assert values(first[0]) == {"a": 1, "b": 2} and values(first[2]) == {"a": 4}
    bad = first[1].readings["a"]
    assert isinstance(bad, Missing) and "HTTP 400" in bad.reason and "parse error" in bad.reason
    assert first[1].readings["b"] == Sample(3.0, 1000.0)
    # The shared request, each read alone, the bad read's queries each alone.
    assert len(session.posts) == 1 + 3 + 2 == sum(x.requests for x in first)
    session.posts.clear()
    second = read_together(r, reads)
    assert [values(x) for x in second] == [values(x) for x in first]
    # Reads 0 and 2 share one; the bad read alone, then its queries each alone.
    assert len(session.posts) == 1 + 1 + 2 == sum(x.requests for x in second)


def test_a_slow_request_is_not_asked_again_and_blinds_the_others_for_one_cycle_at_most() -> None:
    session = FakeSession()
    r = reader(session, reads=3)
    reads = [{"a": "m1"}, {"a": "slow"}, {"a": "m2"}]
    first = read_together(r, reads)
    assert all("did not answer within 2 s" in str(values(x)["a"]) for x in first)
    assert len(session.posts) == 1
    session.posts.clear()
    # Each read of the slow request alone: the others answer, the slow one holds none but itself.
    second = read_together(r, reads)
    assert values(second[0]) == {"a": 1} and values(second[2]) == {"a": 2}
    assert isinstance(second[1].readings["a"], Missing)
    assert len(session.posts) == 3
    session.posts.clear()
    # Those that answered alone share again; the slow one stays alone.
    third = read_together(r, reads)
    assert values(third[0]) == {"a": 1} and values(third[2]) == {"a": 2}
    assert len(session.posts) == 2 and r.seen[-2:] in ([(2, 2), (1, 1)], [(1, 1), (2, 2)])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("session", "why"),
    [
        (FakeSession(fail=requests.ConnectionError("refused")), "unreachable"),
        (FakeSession(status=403), "refused the credentials (HTTP 403"),
    ],
)
def test_a_failure_no_query_can_survive_is_not_split(session: FakeSession, why: str) -> None:
    results = read_together(reader(session, reads=2), [{"a": "m1", "b": "m2"}, {"a": "m3"}])
    assert all(why in str(v) for x in results for v in values(x).values())
    assert len(session.posts) == 1


def test_reads_over_the_limits_are_spread_over_requests_of_the_limits() -> None:
    session = FakeSession()
    r = reader(session, reads=3, limits=Limits(3, 65536))
    results = read_together(r, [{"a": "m1", "b": "m2"}, {"a": "m3", "b": "m4"}, {"a": "m5"}])
    assert [values(x) for x in results] == [{"a": 1, "b": 2}, {"a": 3, "b": 4}, {"a": 5}]
    assert sorted(r.seen) == [(2, 1), (3, 2)]  # type: ignore[attr-defined]


NAMES = st.sampled_from(["m1", "m2", "m37", "bad", "slow"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.dictionaries(st.sampled_from("abcd"), NAMES, min_size=1), min_size=1, max_size=5))
def test_every_read_gets_each_of_its_queries_once_and_a_good_one_is_missing_only_beside_a_slow_one(
    reads: list[dict[str, str]],
) -> None:
    session = FakeSession()
    r = reader(session, reads=len(reads), limits=Limits(4, 65536))
    results = read_together(r, reads)
    assert sum(x.requests for x in results) == len(session.posts)
    for read, result in zip(reads, results, strict=True):
        assert result.readings.keys() == read.keys()
        for key, query in read.items():
            reading = result.readings[key]
            if query.startswith("m"):
                # Another read's bad query never blinds this one; a slow one in the same request does, once.
                assert reading == Sample(float(query[1:]), 1000.0) or (
                    isinstance(reading, Missing) and "did not answer" in reading.reason
                )
            else:
                assert isinstance(reading, Missing)


def test_the_gatherer_hands_every_caller_the_same_plan_and_its_own_index() -> None:
    plans: list[list[str]] = []

    def plan(items: list[str]) -> list[str]:
        plans.append(list(items))
        return list(items)

    gatherer: Gatherer[str, list[str]] = Gatherer(60.0, lambda items: len(items) == 4, plan)
    with ThreadPoolExecutor(4) as pool:
        joined = list(pool.map(gatherer.join, "wxyz"))
    assert len(plans) == 1 and sorted(plans[0]) == list("wxyz")
    for item, (got, index) in zip("wxyz", joined, strict=True):
        assert got is joined[0][0] and got[index] == item
