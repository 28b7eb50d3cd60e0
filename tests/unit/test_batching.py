"""Packing the reads of the cycles that ask together into Prometheus requests, and splitting a failed one
(metrics/batching.py): pure, with hypothesis and hand-worked tables."""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlencode

from hypothesis import given
from hypothesis import strategies as st

from scalekeeper.metrics.batching import (
    Isolation,
    Limits,
    Part,
    Request,
    body_bytes,
    expression,
    pack,
    reads_in,
    sender,
    split,
)

# Queries of a few lengths, some with characters the form encoding expands (", {, =, space).
QUERY = st.sampled_from(
    ["up", 'sum(rate(http_requests_total{app="shop"}[1m]))', "x" * 300, 'q{queue="a b"} * 2', "vector(1)"]
)
READS = st.lists(st.dictionaries(st.text("abc", min_size=1, max_size=3), QUERY, max_size=6), max_size=8)
LIMITS = st.builds(Limits, st.integers(1, 12), st.integers(200, 6000))


def all_parts(reads: list[dict[str, str]]) -> Counter[tuple[int, str]]:
    return Counter((r, key) for r, read in enumerate(reads) for key in read)


@given(READS, LIMITS, st.data())
def test_every_query_is_asked_exactly_once_and_no_request_is_over_the_limits(
    reads: list[dict[str, str]], limits: Limits, data: st.DataObject
) -> None:
    alone = frozenset(data.draw(st.sets(st.integers(0, max(len(reads) - 1, 0)))))
    requests = pack(reads, limits, alone)
    assert Counter((p.read, p.key) for request in requests for p in request) == all_parts(reads)
    for request in requests:
        assert request
        # A single query over the byte limit cannot be cut: it goes alone.
        assert len(request) == 1 or (
            len(request) <= limits.max_queries and body_bytes(request) <= limits.max_bytes
        )


@given(READS, LIMITS, st.data())
def test_a_read_that_shares_a_request_is_in_no_other_and_isolated_reads_share_none(
    reads: list[dict[str, str]], limits: Limits, data: st.DataObject
) -> None:
    alone = frozenset(data.draw(st.sets(st.integers(0, max(len(reads) - 1, 0)))))
    requests = pack(reads, limits, alone)
    holding = Counter(r for request in requests for r in reads_in(request))
    for request in requests:
        shared = reads_in(request)
        assert sender(request) in shared  # sent by a caller that waits for it anyway
        if len(shared) > 1:
            assert all(holding[r] == 1 for r in shared)
            assert not alone & set(shared)


@given(READS, LIMITS)
def test_a_read_that_fits_one_request_gets_one(reads: list[dict[str, str]], limits: Limits) -> None:
    for request in pack(reads, limits, frozenset()):
        for r in reads_in(request):
            whole = tuple(Part(r, k, q) for k, q in reads[r].items())
            if len(whole) <= limits.max_queries and body_bytes(whole) <= limits.max_bytes:
                assert [p for p in request if p.read == r] == list(whole)


@given(READS.filter(any), LIMITS)
def test_the_body_size_is_the_form_encoded_body_at_the_latest_time_it_allows(
    reads: list[dict[str, str]], limits: Limits
) -> None:
    for request in pack(reads, limits, frozenset()):
        body = urlencode({"query": expression(request), "time": "9999999999.999"})
        assert len(body) == body_bytes(request)
        assert len(urlencode({"query": expression(request), "time": "1765000000.123"})) <= body_bytes(request)


@given(READS.filter(any))
def test_splitting_again_and_again_asks_every_query_alone_at_last(reads: list[dict[str, str]]) -> None:
    request: Request = tuple(p for parts in pack(reads, Limits(10**6, 10**9), frozenset()) for p in parts)
    pending, singles = [request], []
    while pending:
        current = pending.pop()
        pieces = split(current)
        if not pieces:
            singles.append(current)
            continue
        assert Counter(p for piece in pieces for p in piece) == Counter(current)
        assert all(len(piece) < len(current) for piece in pieces)
        if len(reads_in(current)) > 1:
            # First each read alone, so a bad read's failure leaves the others' readings whole.
            assert [reads_in(piece) for piece in pieces] == [[r] for r in reads_in(current)]
        pending += pieces
    assert Counter(p for (p,) in singles) == Counter(request)


def parts(read: int, *keys: str) -> list[Part]:
    return [Part(read, key, f"q_{read}_{key}") for key in keys]


def test_three_reads_of_two_queries_in_a_limit_of_four_queries() -> None:
    reads = [{"a": "q_0_a", "b": "q_0_b"}, {"a": "q_1_a", "b": "q_1_b"}, {"a": "q_2_a", "b": "q_2_b"}]
    limits = Limits(4, 10**6)
    assert pack(reads, limits, frozenset()) == [
        (*parts(0, "a", "b"), *parts(1, "a", "b")),
        tuple(parts(2, "a", "b")),
    ]
    # Read 1 isolated: alone; 0 and 2 share.
    assert pack(reads, limits, frozenset({1})) == [
        tuple(parts(1, "a", "b")),
        (*parts(0, "a", "b"), *parts(2, "a", "b")),
    ]


def test_a_read_larger_than_one_request_gets_requests_of_its_own() -> None:
    reads = [{"a": "q_0_a"}, {k: f"q_1_{k}" for k in "abcde"}, {"a": "q_2_a"}]
    # Reads 0 and 2 still share theirs.
    assert pack(reads, Limits(2, 10**6), frozenset()) == [
        tuple(parts(1, "a", "b")),
        tuple(parts(1, "c", "d")),
        tuple(parts(1, "e")),
        (*parts(0, "a"), *parts(2, "a")),
    ]


def test_a_failed_shared_request_is_split_by_read_then_by_query() -> None:
    request = (*parts(0, "a"), *parts(1, "a", "b"))
    assert split(request) == [tuple(parts(0, "a")), tuple(parts(1, "a", "b"))]
    assert split(tuple(parts(1, "a", "b"))) == [tuple(parts(1, "a")), tuple(parts(1, "b"))]
    assert split(tuple(parts(1, "a"))) == []


def test_an_isolated_read_goes_back_when_released_or_after_its_time() -> None:
    isolation = Isolation(seconds=300.0)
    slow, other = {"a": "slow_query"}, {"a": "fine"}
    isolation.isolate(slow, now=1000.0)
    assert isolation.isolated([other, slow], now=1299.0) == {1}
    # Known by its queries: the same policy's read next cycle is the same read.
    assert isolation.isolated([{"a": "slow_query"}], now=1299.0) == {0}
    assert isolation.isolated([slow], now=1300.0) == frozenset()
    assert not isolation.until  # forgotten, not kept forever
    isolation.isolate(slow, now=2000.0)
    isolation.release(slow)
    assert isolation.isolated([slow], now=2000.0) == frozenset()
