"""The operator's own Prometheus metrics: what it decided, what it wrote, how long it took."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from wsgiref.types import StartResponse
    from wsgiref.types import WSGIApplication as WSGIApp


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # Every served policy has these series: kept as plain values (a client library child per label set
        # was ~12 KiB of a served policy's memory).
        self._per_policy = PolicySeries()
        r.register(self._per_policy)
        self.writes = Counter(
            "scalekeeper_scale_writes_total",
            "Writes to the API server, by kind and outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        # Exported at 0 from the start: an alert's increase() cannot see a counter's first error if the
        # series is born with it. Kinds scaled through /scale beyond these are born at their first write.
        for kind in ("status", "Event", "Deployment", "StatefulSet", "HorizontalPodAutoscaler"):
            self.writes.labels(kind, "error")
        self.reconcile_seconds = Histogram(
            "scalekeeper_reconcile_seconds",
            "Time for one policy's cycle.",
            registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        # A replica that cannot keep up with its policies' intervals starts their cycles late: the sign to
        # add replicas or raise maxWorkers (alert ScalekeeperCyclesLate).
        self.cycle_delay_seconds = Histogram(
            "scalekeeper_cycle_delay_seconds",
            "Time from a policy's cycle falling due to its start (waiting for one of maxWorkers).",
            registry=r,
            buckets=(0.1, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300),
        )
        self.query_seconds = Histogram(
            "scalekeeper_prometheus_query_seconds",
            "Time for one policy's batched Prometheus read.",
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5),
        )
        self.queries = Counter(
            "scalekeeper_prometheus_requests_total", "HTTP requests sent to Prometheus.", registry=r
        )
        self.request_queries = Histogram(
            "scalekeeper_prometheus_request_queries",
            "Queries in one Prometheus request (the cycles reading together share requests).",
            registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
        )
        self.request_reads = Histogram(
            "scalekeeper_prometheus_request_policies",
            "Policies' reads whose queries one Prometheus request holds.",
            registry=r,
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32, 64, 128, 256),
        )
        self.query_missing = Counter(
            "scalekeeper_prometheus_missing_total", "Queries that gave no usable value.", registry=r
        )
        self.serving = Gauge(
            "scalekeeper_serving",
            "1 while this replica's member Lease is renewed and it may write.",
            registry=r,
        )
        self.policies = Gauge("scalekeeper_policies", "ScalingPolicies this replica watches.", registry=r)
        self.policies_served = Gauge(
            "scalekeeper_policies_served",
            "ScalingPolicies this replica serves (status.servedBy).",
            registry=r,
        )
        self.members = Gauge("scalekeeper_members", "Live replicas on this replica's ring.", registry=r)
        self.ring_changes = Counter(
            "scalekeeper_ring_changes_total", "Changes of the live members this replica saw.", registry=r
        )
        self.handovers = Counter(
            "scalekeeper_handovers_total",
            "Policies this replica claimed or released, and writes refused as stale.",
            ["step"],
            registry=r,
        )

    def decision(
        self, namespace: str, policy: str, target: str, limited_by: str, desired: int, current: int
    ) -> None:
        self._per_policy.decision(namespace, policy, target, limited_by, desired, current)

    def forget_policy(self, namespace: str, policy: str) -> None:
        """Drop a deleted (or handed over) policy's series: not exported forever, not kept in memory."""
        self._per_policy.forget(namespace, policy)

    def metrics_read(self, namespace: str, policy: str, available: bool) -> None:
        self._per_policy.metrics_read(namespace, policy, available)

    def write(self, kind: str, outcome: str) -> None:
        self.writes.labels(kind, outcome).inc()

    def reconciled(self, seconds: float) -> None:
        self.reconcile_seconds.observe(seconds)

    def prometheus_query(self, seconds: float, requests: int, missing: int) -> None:
        if requests:
            self.query_seconds.observe(seconds)
        self.queries.inc(requests)
        self.query_missing.inc(missing)

    def prometheus_request(self, queries: int, policies: int) -> None:
        self.request_queries.observe(queries)
        self.request_reads.observe(policies)

    def serve(self, port: int, ready: Callable[[], bool], address: str = "0.0.0.0") -> None:
        """/metrics, and /readyz for the readiness probe: 200 once `ready` says so, 503 before."""
        server = make_server(address, port, self.app(ready), _ThreadingServer, _QuietHandler)
        threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()

    def app(self, ready: Callable[[], bool]) -> WSGIApp:
        metrics = make_wsgi_app(self.registry)

        def route(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            if environ.get("PATH_INFO") != "/readyz":
                answer: Iterable[bytes] = metrics(environ, start_response)
                return answer
            ok = ready()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"ready\n" if ok else b"not ready: the watches have not listed yet\n"]

        return route


@dataclass(slots=True)
class _TargetSeries:
    desired: int
    current: int
    decisions: dict[str, int]  # limited_by -> count


@dataclass(slots=True)
class _PolicySeries:
    targets: dict[str, _TargetSeries] = field(default_factory=dict)
    available: int | None = None


class PolicySeries(Collector):
    """The series each served policy has: decisions by target and limiting rule, desired and current
    replicas per target, and whether its last cycle read every metric. Updated by the cycles' threads,
    read by the scrape's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._policies: dict[tuple[str, str], _PolicySeries] = {}

    def decision(
        self, namespace: str, policy: str, target: str, limited_by: str, desired: int, current: int
    ) -> None:
        with self._lock:
            series = self._policies.setdefault((namespace, policy), _PolicySeries())
            known = series.targets.get(target)
            if known is None:
                series.targets[target] = _TargetSeries(desired, current, {limited_by: 1})
                return
            known.desired, known.current = desired, current
            known.decisions[limited_by] = known.decisions.get(limited_by, 0) + 1

    def metrics_read(self, namespace: str, policy: str, available: bool) -> None:
        with self._lock:
            self._policies.setdefault((namespace, policy), _PolicySeries()).available = int(available)

    def forget(self, namespace: str, policy: str) -> None:
        with self._lock:
            self._policies.pop((namespace, policy), None)

    def collect(self) -> Iterator[Metric]:
        decisions = CounterMetricFamily(
            "scalekeeper_decisions",
            "Decisions made, by target and the rule that limited them.",
            labels=["namespace", "policy", "target", "limited_by"],
        )
        desired = GaugeMetricFamily(
            "scalekeeper_desired_replicas",
            "Replicas decided per target.",
            labels=["namespace", "policy", "target"],
        )
        current = GaugeMetricFamily(
            "scalekeeper_current_replicas",
            "Replicas per target when the cycle decided.",
            labels=["namespace", "policy", "target"],
        )
        available = GaugeMetricFamily(
            "scalekeeper_metrics_available",
            "1 while the policy's last cycle read every metric it sizes by (its MetricsAvailable condition).",
            labels=["namespace", "policy"],
        )
        # Copied under the lock, turned into samples outside it: the cycles' reports wait on the lock.
        with self._lock:
            copied = [
                (
                    key,
                    s.available,
                    [(t, v.desired, v.current, list(v.decisions.items())) for t, v in s.targets.items()],
                )
                for key, s in self._policies.items()
            ]
        for (namespace, policy), is_available, targets in copied:
            if is_available is not None:
                available.add_metric([namespace, policy], is_available)
            for target, desired_now, current_now, counts in targets:
                desired.add_metric([namespace, policy, target], desired_now)
                current.add_metric([namespace, policy, target], current_now)
                for limited_by, count in counts:
                    decisions.add_metric([namespace, policy, target, limited_by], count)
        yield from (decisions, desired, current, available)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    # A slow scrape must not hold a probe back.
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        # A probe every few seconds is not news; the operator's own logs say what it does.
        pass
