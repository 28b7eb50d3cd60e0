"""The batched query's shape and how its answer is taken apart (pure functions, no server)."""

from __future__ import annotations

import math

import pytest

from scalekeeper.metrics.prometheus import MetricKey, Missing, Sample, readings_from_result, session_for
from scalekeeper.metrics.promql import KEY_LABEL, PART_LABEL, grouped, joined, stamped
from scalekeeper.metrics.promql import batch as batch_expression


def test_batch_expression_tags_each_query_and_the_time_of_a_selectors_newest_sample() -> None:
    expr = batch_expression(
        {"web|request_rate": "sum(rate(x[1m]))", "worker/video|waiting": 'q{queue="video"}'}
    )
    assert expr.count(" or ") == 2
    assert 'label_replace(sum(sum(rate(x[1m]))), "sk_key", "web|request_rate", "", "")' in expr
    assert 'max(timestamp(q{queue="video"}))' in expr and expr.count('"sk_part", "ts"') == 1
    # Of any expression but a selector, timestamp() answers the evaluation time: not asked for.
    assert "timestamp(sum(rate" not in expr


@pytest.mark.parametrize(
    ("query", "has_sample_time"),
    [
        ("up", True),
        (' bench_load{run="a",metric="b"} ', True),
        ('{__name__="up"}', True),
        ('x{a="}"}', True),
        ("x{a='}'}", True),
        ("(up)", True),
        ("up offset 5m", True),
        ("up @ start()", True),
        ("sum(up)", False),
        ('q{queue="a b"} * 2', False),
        ("rate(x[1m])", False),
        ("(a) or (b)", False),
        ("up offset 5m or vector(0)", False),
    ],
)
def test_only_a_selector_has_a_sample_time_to_ask_for(query: str, has_sample_time: bool) -> None:
    assert stamped(query) is has_sample_time


def or_depth(expr: str) -> int:
    """The depth of the `or` tree as PromQL parses it (left-associative), over parts without parentheses."""
    tokens = expr.replace("(", " ( ").replace(")", " ) ").split()
    position = 0

    def operand() -> int:
        nonlocal position
        position += 1
        if tokens[position - 1] != "(":
            return 0
        depth = chain()
        position += 1  # ")"
        return depth

    def chain() -> int:
        nonlocal position
        depth = operand()
        while position < len(tokens) and tokens[position] == "or":
            position += 1
            depth = max(depth, operand()) + 1
        return depth

    return chain()


@pytest.mark.parametrize("count", [1, 2, 3, 4, 7, 64, 100, 257])
def test_parts_are_joined_in_order_as_a_balanced_tree(count: int) -> None:
    # Left-deep (a or b or c ...), Prometheus matches each part against all before it: n^2 / 2.
    names = [f"p{i}" for i in range(count)]
    expr = joined(names)
    assert expr.replace("(", "").replace(")", "").split(" or ") == names
    assert or_depth(expr) == math.ceil(math.log2(count))
    assert expr.count("(") == expr.count(")") == grouped(count)


def test_nothing_to_join_is_an_empty_expression() -> None:
    assert joined([]) == "" and grouped(0) == 0


def test_a_flat_chain_is_as_deep_as_it_is_long() -> None:
    assert or_depth("a or b or c or d") == 3
    assert or_depth("a or b or (c or d)") == 2


def test_keys_with_quotes_are_escaped() -> None:
    assert 'worker/a\\"b waiting' in batch_expression({MetricKey('worker/a"b', "waiting"): "up"})


def test_typed_keys_come_back_as_they_were_given() -> None:
    key = MetricKey("worker/video", "waiting")
    labels = {KEY_LABEL: "worker/video waiting"}
    readings = readings_from_result({key: "q"}, [{"metric": labels, "value": [1.0, "3"]}], 1.0)
    assert readings == {key: Sample(3.0, 1.0)}


def series(key: str, value: str, ts: bool = False) -> dict[str, object]:
    labels = {KEY_LABEL: key}
    if ts:
        labels[PART_LABEL] = "ts"
    return {"metric": labels, "value": [1000.0, value]}


def test_values_pair_with_their_sample_time_and_absent_ones_are_missing() -> None:
    queries = {"a": "qa", "b": "qb", "c": "qc"}
    result = [
        series("a", "12.5"),
        series("a", "990", ts=True),
        series("b", "NaN"),
        series("b", "995", ts=True),
    ]
    readings = readings_from_result(queries, result, evaluated_at=1000.0)
    assert readings["a"] == Sample(12.5, 990.0)
    b = readings["b"]
    assert isinstance(b, Sample) and math.isnan(b.value)  # NaN is passed on for the engine to reject
    assert readings["c"] == Missing("qc", "the query returned no series")


def test_value_without_timestamp_part_is_stamped_with_evaluation_time() -> None:
    readings = readings_from_result({"a": "qa"}, [series("a", "+Inf")], evaluated_at=1234.0)
    a = readings["a"]
    assert isinstance(a, Sample) and a.timestamp == 1234.0 and math.isinf(a.value)


def test_unknown_keys_in_the_answer_are_ignored() -> None:
    readings = readings_from_result({"a": "qa"}, [series("zzz", "1"), series("a", "2")], evaluated_at=0.0)
    assert readings == {"a": Sample(2.0, 0.0)}


def test_failures_no_query_can_survive_are_told_once_for_the_whole_batch() -> None:
    import requests

    from scalekeeper.metrics.prometheus import PrometheusRejected, _whole_batch_failure

    url = "https://prom.example"
    tls = _whole_batch_failure(url, requests.exceptions.SSLError("certificate verify failed"))
    assert tls is not None and "TLS" in tls and "CA file" in tls
    down = _whole_batch_failure(url, requests.exceptions.ConnectionError("refused"))
    assert down is not None and "unreachable" in down
    for status in (401, 403):
        refused = _whole_batch_failure(url, PrometheusRejected(status, "no"))
        assert refused is not None and f"HTTP {status}" in refused and "bearer token" in refused
    # A bad query (400) or a slow one (read timeout) may be one query of the batch: not the whole.
    assert _whole_batch_failure(url, PrometheusRejected(400, "parse error")) is None
    assert _whole_batch_failure(url, requests.exceptions.ReadTimeout("slow")) is None
    connect = _whole_batch_failure(url, requests.exceptions.ConnectTimeout("no route"))
    assert connect is not None and "unreachable" in connect


def test_the_session_takes_proxies_and_ca_from_the_environment_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.corp:3128")
    monkeypatch.setenv("NO_PROXY", "prometheus.monitoring.svc")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/corp.pem")
    behind = session_for("https://prometheus.example.com", verify=True)
    assert behind.proxies.get("https") == "http://proxy.corp:3128"
    assert behind.verify == "/etc/ssl/corp.pem"
    assert behind.trust_env is False  # nothing re-read per request
    local = session_for("https://prometheus.monitoring.svc:9090", verify="/var/run/ca.crt")
    assert "https" not in local.proxies  # NO_PROXY holds
    assert local.verify == "/var/run/ca.crt"  # an explicit CA wins over the environment's
    monkeypatch.delenv("HTTPS_PROXY")
    assert behind.proxies.get("https") == "http://proxy.corp:3128"  # as it was at the start
