"""One Prometheus request per policy per cycle.

Every query a policy needs is folded into a single PromQL expression: each part is summed to one series
and tagged with a label naming the part (`sk_key`), alongside the timestamp of its newest raw sample (so a
dead exporter whose last value is still inside Prometheus's lookback shows as stale, not as fresh). The
parts are joined with `or`, which keeps them all because their labels differ.

When that one request fails (one user query with a syntax error breaks the whole batch), each part is asked
alone so the failure is pinned on the query that caused it and the others still count.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

import requests
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException

from .promql import KEY_LABEL, PART_LABEL, batch

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


class PrometheusReader:
    """Reads a batch of named PromQL queries at one instant."""

    def __init__(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        verify: bool | str = True,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.session = session_for(url, verify)
        self._client = PrometheusConnect(
            url=url,
            headers=dict(headers or {}),
            session=self.session,
            timeout=timeout,
            disable_ssl=verify is False,
        )
        self._clock = clock
        self.url = url

    def _query(self, expression: str, at: float) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._client.custom_query(expression, params={"time": f"{at:.3f}"})
        return result

    def read(self, queries: Mapping[K, str]) -> BatchResult[K]:
        started = time.perf_counter()
        if not queries:
            return BatchResult({}, 0, 0.0)
        at = self._clock()
        try:
            result = self._query(batch(queries), at)
        except (PrometheusApiClientException, requests.RequestException, ValueError, KeyError) as exc:
            reason = _whole_batch_failure(self.url, exc)
            if reason is not None:
                # Asking part by part would fail the same way, slower.
                readings: dict[K, QueryResult] = {k: Missing(q, reason) for k, q in queries.items()}
                return BatchResult(readings, 1, time.perf_counter() - started)
            return self._read_one_by_one(queries, at, started)
        return BatchResult(readings_from_result(queries, result, at), 1, time.perf_counter() - started)

    def by_label(self, query: str, label: str) -> dict[str, float]:
        """One query's series by the value of `label` (series without it are left out), now. Raises
        MetricsUnreadable with why when Prometheus cannot answer or a value is not a finite number."""
        try:
            result = self._query(query, self._clock())
        except (PrometheusApiClientException, requests.RequestException, ValueError, KeyError) as exc:
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

    def _read_one_by_one(self, queries: Mapping[K, str], at: float, started: float) -> BatchResult[K]:
        readings: dict[K, QueryResult] = {}
        for key, query in queries.items():
            try:
                result = self._query(batch({key: query}), at)
            except (PrometheusApiClientException, requests.RequestException, ValueError, KeyError) as exc:
                readings[key] = Missing(query, f"Prometheus rejected the query: {exc}")
            else:
                readings.update(readings_from_result({key: query}, result, at))
        return BatchResult(readings, 1 + len(queries), time.perf_counter() - started)


class MetricsUnreadable(Exception):
    """A query Prometheus could not answer usably; the message says why."""


def _whole_batch_failure(url: str, exc: Exception) -> str | None:
    """Why no query can succeed (unreachable, TLS, credentials refused); None when it may be one query."""
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS with Prometheus at {url} failed (check the CA file): {exc}"
    if isinstance(exc, requests.RequestException):
        return f"Prometheus at {url} is unreachable: {type(exc).__name__}: {exc}"
    text = str(exc)
    # prometheus-api-client says "HTTP Status Code <status> (<body>)" for any answer other than 200.
    for status in ("401", "403"):
        if text.startswith(f"HTTP Status Code {status}"):
            return (
                f"Prometheus at {url} refused the credentials (HTTP {status}; check the bearer token): {text}"
            )
    return None
