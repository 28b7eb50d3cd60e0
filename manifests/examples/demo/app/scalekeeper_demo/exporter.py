"""Prometheus exporter of Celery queue depth, reading the broker's Redis at scrape time.

  python -m scalekeeper_demo.exporter --port 9808          (env: BROKER_URL, QUEUES, KEY_PREFIX)

Per queue (label ``queue``):
  celery_queue_waiting_tasks    gauge    waiting messages: LLEN of the queue's list and its priority lists
  celery_queue_inflight_tasks   gauge    delivered to a worker and not acked yet (running or prefetched)
  celery_queue_published_total  counter  publishes (demo:publishes:<queue>, kept by the producer)
  celery_queue_completed_total  counter  executions completed (demo:completions:<queue>, kept by the task)
Always:
  celery_queue_exporter_up                    1 when this scrape read Redis, else 0
  celery_queue_exporter_errors_total          scrapes that could not read Redis
  celery_queue_exporter_scrape_duration_seconds
When Redis cannot be read the queue series are left out of the scrape (missing, never zero).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import redis
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from . import keys, settings

log = logging.getLogger("scalekeeper_demo.exporter")


@dataclass
class QueueStats:
    waiting: dict[str, int] = field(default_factory=dict)
    inflight: dict[str, int] = field(default_factory=dict)
    published: dict[str, int] = field(default_factory=dict)
    completed: dict[str, int] = field(default_factory=dict)
    unattributed_inflight: int = 0


def _int(v: bytes | str | int | None) -> int:
    return int(v) if v is not None else 0


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _parse_binding(member: bytes | str) -> tuple[str, str]:
    """A member of _kombu.binding.<exchange>: routing_key SEP pattern SEP queue -> (routing_key, queue)."""
    parts = _text(member).split(keys.KOMBU_SEP)
    return (parts[0], parts[-1]) if len(parts) >= 3 else ("", "")


def read_stats(client: redis.Redis, queues: list[str], prefix: str = "") -> QueueStats:
    """One consistent read (MULTI/EXEC) of every list length, the unacked hash and the counters.

    Raises redis errors: the caller decides what a failed read means (no queue series at all).
    """
    pipe = client.pipeline(transaction=True)
    for q in queues:
        for k in keys.queue_list_keys(q, prefix):
            pipe.llen(k)
    pipe.hvals(keys.unacked(prefix))
    for q in queues:
        pipe.get(keys.publishes(q, prefix))
        pipe.get(keys.completions(q, prefix))
    res = pipe.execute()

    stats = QueueStats()
    it = iter(res)
    per_queue = len(keys.PRIORITY_LEVELS)
    for q in queues:
        stats.waiting[q] = sum(int(next(it)) for _ in range(per_queue))
    unacked_vals = next(it)
    for q in queues:
        stats.published[q] = _int(next(it))
        stats.completed[q] = _int(next(it))

    counts, stats.unattributed_inflight = attribute_unacked(client, unacked_vals, prefix)
    stats.inflight = {q: counts.get(q, 0) for q in queues}
    return stats


def attribute_unacked(
    client: redis.Redis, values: Iterable[bytes], prefix: str = ""
) -> tuple[Counter[str], int]:
    """Count unacked messages per queue.

    Each value is kombu's JSON ``[message, exchange, routing_key]``. The queue is found as kombu's own
    ``_lookup`` finds it: the members of ``_kombu.binding.<exchange>`` whose routing key matches (direct
    exchanges); with no binding (the default exchange ''), the routing key is the queue name.
    """
    entries: list[tuple[str, str]] = []
    for raw in values:
        try:
            _msg, exchange, routing_key = json.loads(raw)
            entries.append((str(exchange or ""), str(routing_key or "")))
        except (ValueError, TypeError):
            entries.append(("", ""))
    exchanges = sorted({ex for ex, _ in entries if ex})
    bindings: dict[str, list[tuple[str, str]]] = {}
    if exchanges:
        pipe = client.pipeline(transaction=False)
        for ex in exchanges:
            pipe.smembers(keys.binding(ex, prefix))
        for ex, members in zip(exchanges, pipe.execute(), strict=True):
            bindings[ex] = [_parse_binding(m) for m in members]
    counts: Counter[str] = Counter()
    unattributed = 0
    for ex, rk in entries:
        targets = {q for brk, q in bindings.get(ex, []) if brk == rk and q} if ex else set()
        if not targets and rk:
            targets = {rk}
        if not targets:
            unattributed += 1
        for q in targets:
            counts[q] += 1
    return counts, unattributed


class QueueCollector(Collector):
    """Reads Redis on every collect(); never caches, never exports a queue series it could not read."""

    def __init__(self, client: redis.Redis, queues: list[str], prefix: str = "") -> None:
        self.client = client
        self.queues = queues
        self.prefix = prefix
        self.errors = 0
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        # Registration must not touch Redis: describe nothing, collect() reads live.
        return []

    def collect(self) -> Iterator[Metric]:
        start = time.perf_counter()
        stats: QueueStats | None
        try:
            stats = read_stats(self.client, self.queues, self.prefix)
        except (redis.RedisError, OSError, ValueError) as e:
            with self._lock:
                self.errors += 1
            log.warning("reading queue depth from Redis failed: %s", e)
            stats = None

        if stats is not None:
            waiting = GaugeMetricFamily(
                "celery_queue_waiting_tasks",
                "Messages waiting in the queue (all priority lists).",
                labels=["queue"],
            )
            inflight = GaugeMetricFamily(
                "celery_queue_inflight_tasks",
                "Messages delivered to workers and not acked yet (running or prefetched).",
                labels=["queue"],
            )
            published = CounterMetricFamily(
                "celery_queue_published", "Tasks published to the queue.", labels=["queue"]
            )
            completed = CounterMetricFamily(
                "celery_queue_completed", "Task executions completed from the queue.", labels=["queue"]
            )
            for q in self.queues:
                waiting.add_metric([q], stats.waiting[q])
                inflight.add_metric([q], stats.inflight[q])
                published.add_metric([q], stats.published[q])
                completed.add_metric([q], stats.completed[q])
            yield from (waiting, inflight, published, completed)
            unattributed = GaugeMetricFamily(
                "celery_queue_exporter_unattributed_inflight_tasks",
                "Unacked messages whose queue could not be found from their exchange and routing key.",
            )
            unattributed.add_metric([], stats.unattributed_inflight)
            yield unattributed

        up = GaugeMetricFamily(
            "celery_queue_exporter_up", "1 when this scrape read the broker's Redis, else 0."
        )
        up.add_metric([], 1 if stats is not None else 0)
        yield up
        errors = CounterMetricFamily("celery_queue_exporter_errors", "Scrapes that could not read Redis.")
        errors.add_metric([], self.errors)
        yield errors
        duration = GaugeMetricFamily(
            "celery_queue_exporter_scrape_duration_seconds", "Time this scrape spent reading Redis."
        )
        duration.add_metric([], time.perf_counter() - start)
        yield duration


def make_registry(
    redis_url: str, queues: list[str], prefix: str = ""
) -> tuple[CollectorRegistry, QueueCollector]:
    client = redis.Redis.from_url(
        redis_url, socket_timeout=3, socket_connect_timeout=2, health_check_interval=30
    )
    registry = CollectorRegistry(auto_describe=True)
    collector = QueueCollector(client, queues, prefix)
    registry.register(collector)
    return registry, collector


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m scalekeeper_demo.exporter", description=__doc__.split("\n")[0]
    )
    p.add_argument("--port", type=int, default=9808)
    p.add_argument("--addr", default="0.0.0.0")
    p.add_argument("--redis-url", default=None, help="default: DEMO_REDIS_URL, else BROKER_URL")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    url = args.redis_url or settings.demo_redis_url()
    queues = settings.queues()
    registry, _ = make_registry(url, queues, settings.key_prefix())
    server, _thread = start_http_server(args.port, addr=args.addr, registry=registry)
    log.info(
        "serving queue metrics for %s from %s on %s:%d",
        ",".join(queues),
        url.rsplit("@", 1)[-1],
        args.addr,
        args.port,
    )

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
