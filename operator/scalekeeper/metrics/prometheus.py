"""Prometheus reads: the policies' batched queries, and one query's series by label.

Every query a policy needs is folded into one PromQL expression with those of the policies whose cycles
ask at the same time (metrics/batching.py): each part is summed to one series and tagged with a label
naming it (`sk_key`), alongside the timestamp of its newest raw sample (so a dead exporter whose last value
is still inside Prometheus's lookback shows as stale, not as fresh). The parts are joined with `or`, which
keeps them all because their labels differ.

When a request fails (one user query with a syntax error breaks the whole expression), each policy's
queries are asked alone, then each query of a policy whose queries still fail, so the failure is pinned on
the query that caused it and the others still count, in the same cycle.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar, cast

import requests

from .batching import (
    DEFAULT_LIMITS,
    ISOLATION_SECONDS,
    Isolation,
    Limits,
    Part,
    Request,
    expression,
    pack,
    reads_in,
    sender,
    split,
)
from .gather import Gatherer
from .promql import KEY_LABEL, PART_LABEL

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Sample:
    """A value and the time of the newest raw sample behind it (Unix seconds)."""

    value: float
    timestamp: float


@dataclass(frozen=True)
class Missing:
    """Why a query gave no usable value; the query is kept so the status can show it."""

    query: str
    reason: str


QueryResult = Sample | Missing


class MetricKey(NamedTuple):
    """One metric of one target: the key of a query in a policy's batch."""

    target: str
    metric: str

    def __str__(self) -> str:
        return f"{self.target} {self.metric}"


@dataclass(frozen=True)
class BatchResult(Generic[K]):
    readings: dict[K, QueryResult]
    requests: int
    seconds: float


def _parse_value(raw: str) -> float:
    # Prometheus encodes NaN and infinities as strings; float() reads them, and the engine rejects them.
    return float(raw)


def readings_from_result(
    queries: Mapping[K, str], result: list[dict[str, Any]], evaluated_at: float
) -> dict[K, QueryResult]:
    keys = {str(key): key for key in queries}
    values: dict[K, float] = {}
    stamps: dict[K, float] = {}
    for series in result:
        labels = series.get("metric", {})
        key = keys.get(labels.get(KEY_LABEL, ""))
        if key is None:
            continue
        raw = _parse_value(series["value"][1])
        if labels.get(PART_LABEL) == "ts":
            stamps[key] = raw
        else:
            values[key] = raw
    readings: dict[K, QueryResult] = {}
    for key, query in queries.items():
        if key not in values:
            readings[key] = Missing(query, "the query returned no series")
            continue
        stamp = stamps.get(key, evaluated_at)
        readings[key] = Sample(values[key], stamp if math.isfinite(stamp) else evaluated_at)
    return readings


def session_for(url: str, verify: bool | str) -> requests.Session:
    """A session that reads the environment once, here, instead of at every request.

    With `trust_env` requests walks the whole environment for proxies and reads ~/.netrc on each request:
    0.2 ms a query on the benchmark machine, about 4% of a policy cycle's CPU, more in a pod whose
    environment holds variables for every Service of its namespace. HTTP(S)_PROXY, NO_PROXY and
    REQUESTS_CA_BUNDLE still apply, as they were at the start."""
    session = requests.Session()
    session.proxies = requests.utils.get_environ_proxies(url)
    if verify is True:
        verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.verify = verify
    session.trust_env = False
    return session


class MetricsUnreadable(Exception):
    """A query Prometheus could not answer usably; the message says why."""


class PrometheusRejected(Exception):
    """Prometheus answered with an HTTP status other than 200."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:500]}")
        self.status = status


# The answer that one request's parts get: by part, every part of the request once.
Answer = dict[Part, QueryResult]

# What a request may fail with; anything else is a bug, and fails the reads it holds.
_FAILURES = (PrometheusRejected, requests.RequestException, ValueError, KeyError)


class _Round:
    """The reads gathered together: the requests planned for them, and each read's readings as the
    requests holding its queries are answered (each by the caller that sends it, on its thread)."""

    def __init__(self, reads: list[Mapping[Hashable, str]], requests: list[Request], at: float) -> None:
        self.reads, self.requests, self.at = reads, requests, at
        self.readings: list[dict[Hashable, QueryResult]] = [{} for _ in reads]
        self._waiting = [0] * len(reads)
        for request in requests:
            for r in reads_in(request):
                self._waiting[r] += 1
        self._done = [threading.Event() for _ in reads]
        self._lock = threading.Lock()

    def answered(self, request: Request, answer: Answer) -> None:
        with self._lock:
            for part in request:
                self.readings[part.read][part.key] = answer[part]
            for r in reads_in(request):
                self._waiting[r] -= 1
                if self._waiting[r] == 0:
                    self._done[r].set()

    def wait(self, read: int) -> dict[Hashable, QueryResult]:
        self._done[read].wait()
        return self.readings[read]


class PrometheusReader:
    """Reads batches of named PromQL queries at one instant. The reads that arrive within `window`
    seconds of each other (the cycles due in the same scheduler tick) share requests (metrics/batching.py),
    each request a POST of at most `limits`; each read gets its own readings. `timeout`: of one request; a
    request that times out is not asked again (its reads are Missing for this cycle, then read alone until
    they answer), so a slow query delays only the reads in its request, by at most the timeout."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        verify: bool | str = True,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
        window: float = 0.0,
        limits: Limits = DEFAULT_LIMITS,
        most_reads: int = 1,
        on_request: Callable[[int, int], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.session = session_for(url, verify)
        self._headers = dict(headers or {})
        self._timeout = timeout
        self._clock = clock
        self._monotonic = monotonic
        self._limits = limits
        self._on_request = on_request or (lambda queries, reads: None)
        self._isolation = Isolation(ISOLATION_SECONDS)
        self._isolation_lock = threading.Lock()
        self.url = url

        def full(reads: list[Mapping[Hashable, str]]) -> bool:
            # Every worker is here: no other cycle can come.
            return len(reads) >= most_reads

        self._gatherer: Gatherer[Mapping[Hashable, str], _Round] = Gatherer(window, full, self._plan)

    def _query(self, expression: str, at: float) -> list[dict[str, Any]]:
        response = self.session.post(
            f"{self.url}/api/v1/query",
            data={"query": expression, "time": f"{at:.3f}"},
            headers=self._headers,
            timeout=self._timeout,
        )
        if response.status_code != 200:
            raise PrometheusRejected(response.status_code, response.text)
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    def read(self, queries: Mapping[K, str]) -> BatchResult[K]:
        """This read's readings, every query once. `requests`: the requests this call sent (its own, and
        those it sent for the reads it shared them with), so the sum over the reads counts each once."""
        started = time.perf_counter()
        if not queries:
            return BatchResult({}, 0, 0.0)
        # Mapping is invariant in its key: each read's keys come back to it, unchanged, as K.
        round_, index = self._gatherer.join(cast(Mapping[Hashable, str], queries))
        sent = 0
        for request in round_.requests:
            if sender(request) == index:
                sent += self._send(round_, request)
        readings = cast(dict[K, QueryResult], round_.wait(index))
        return BatchResult(readings, sent, time.perf_counter() - started)

    def _plan(self, reads: list[Mapping[Hashable, str]]) -> _Round:
        with self._isolation_lock:
            alone = self._isolation.isolated(reads, self._monotonic())
        return _Round(reads, pack(reads, self._limits, alone), self._clock())

    def _send(self, round_: _Round, request: Request) -> int:
        try:
            answer, sent = self._ask(round_, request)
        except BaseException:
            # The others in this request must not wait forever; the error itself goes up to the cycle.
            round_.answered(
                request, {p: Missing(p.query, "the read failed: see the operator's log") for p in request}
            )
            raise
        round_.answered(request, answer)
        return sent

    def _ask(self, round_: _Round, request: Request) -> tuple[Answer, int]:
        """The request's answer, and how many requests it took (more when it failed and was split)."""
        self._on_request(len(request), len(reads_in(request)))
        try:
            result = self._query(expression(request), round_.at)
        except _FAILURES as exc:
            return self._failed(round_, request, exc)
        readings = readings_from_result(dict(enumerate(p.query for p in request)), result, round_.at)
        if len(reads_in(request)) == 1 and len(request) == len(round_.reads[request[0].read]):
            self._isolate(round_, request, isolate=False)
        return {part: readings[i] for i, part in enumerate(request)}, 1

    def _failed(self, round_: _Round, request: Request, exc: Exception) -> tuple[Answer, int]:
        whole = _whole_batch_failure(self.url, exc)
        if whole is not None:
            # Asking in parts would fail the same way, slower.
            return {p: Missing(p.query, whole) for p in request}, 1
        if isinstance(exc, requests.Timeout):
            # Asked again, in parts, the slow query would hold the others back once more: they are read
            # next cycle, alone, so the slow one holds none but itself.
            self._isolate(round_, request, isolate=True)
            why = f"Prometheus at {self.url} did not answer within {self._timeout:g} s"
            return {p: Missing(p.query, why) for p in request}, 1
        if len(reads_in(request)) == 1:
            self._isolate(round_, request, isolate=True)
        answer: Answer = {}
        sent = 1
        pieces = split(request)
        for piece in pieces:
            piece_answer, piece_sent = self._ask(round_, piece)
            answer.update(piece_answer)
            sent += piece_sent
        if not pieces:
            answer[request[0]] = Missing(request[0].query, f"Prometheus rejected the query: {exc}")
        return answer, sent

    def _isolate(self, round_: _Round, request: Request, *, isolate: bool) -> None:
        with self._isolation_lock:
            for r in reads_in(request):
                if isolate:
                    self._isolation.isolate(round_.reads[r], self._monotonic())
                else:
                    self._isolation.release(round_.reads[r])

    def by_label(self, query: str, label: str) -> dict[str, float]:
        """One query's series by the value of `label` (series without it are left out), now. Raises
        MetricsUnreadable with why when Prometheus cannot answer or a value is not a finite number."""
        try:
            result = self._query(query, self._clock())
        except _FAILURES as exc:
            why = _whole_batch_failure(self.url, exc) or f"Prometheus rejected the query: {exc}"
            raise MetricsUnreadable(why) from exc
        values: dict[str, float] = {}
        for series in result:
            name = series.get("metric", {}).get(label)
            if name is None:
                continue
            value = _parse_value(series["value"][1])
            if not math.isfinite(value):
                raise MetricsUnreadable(f"{label} {name}: the value is {value}")
            values[name] = value
        return values


def _whole_batch_failure(url: str, exc: Exception) -> str | None:
    """Why no query can succeed (unreachable, TLS, credentials refused); None when it may be one query
    (rejected, or too slow to answer)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS with Prometheus at {url} failed (check the CA file): {exc}"
    if isinstance(exc, requests.ReadTimeout):
        return None
    if isinstance(exc, requests.RequestException):
        return f"Prometheus at {url} is unreachable: {type(exc).__name__}: {exc}"
    if isinstance(exc, PrometheusRejected) and exc.status in (401, 403):
        # The reads are POSTs: a proxy that authorizes by verb (the API server's service proxy: `create` on
        # services/proxy) may let a GET through and refuse them.
        return (
            f"Prometheus at {url} refused the credentials (HTTP {exc.status}; check the bearer token, and "
            f"that it may POST): {exc}"
        )
    return None
