"""The web tier: a small threaded HTTP server.

  GET /            CPU work (WORK_MS, or ?ms=N) and one read (GET demo:item:<n>) against the read tier
  GET /enqueue     ?queue=video&n=10&seconds=0.5[&priority=P] publishes demo.work tasks (like the producer)
  GET /metrics     Prometheus metrics
  GET /healthz     liveness/readiness (not counted)

Metrics:
  demo_http_requests_total{app="web"}          requests to / and /enqueue (not /metrics, not /healthz)
  demo_http_request_duration_seconds{app="web"} histogram of the same requests
  demo_db_reads_total                           simulated reads (each request to / does one)
  demo_db_read_errors_total                     reads that failed against READ_REDIS_URL
With READ_REDIS_URL unset a read is only counted.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import redis
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from . import keys, settings

log = logging.getLogger("scalekeeper_demo.web")
MAX_ENQUEUE = 1000


class ReadTier:
    """Reads against the db-replica Service. The client is replaced every ``recycle`` seconds so new
    connections (and so new replicas behind the Service) get a share of the reads."""

    def __init__(self, url: str | None, items: int, recycle: float = 15.0) -> None:
        self.url = url
        self.items = max(1, items)
        self.recycle = recycle
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._born = 0.0

    def _get_client(self) -> redis.Redis:
        with self._lock:
            now = time.monotonic()
            if self._client is None or now - self._born > self.recycle:
                old = self._client
                assert self.url is not None
                self._client = redis.Redis.from_url(
                    self.url, socket_timeout=0.5, socket_connect_timeout=0.5, max_connections=64
                )
                self._born = now
                if old is not None:
                    # Idle connections close now; ones in use are dropped when released.
                    threading.Thread(
                        target=old.connection_pool.disconnect,
                        kwargs={"inuse_connections": False},
                        daemon=True,
                    ).start()
            return self._client

    def read(self) -> bool:
        """One read; True when it reached the read tier (or there is none configured)."""
        if not self.url:
            return True
        try:
            self._get_client().get(keys.item(random.randrange(self.items)))
            return True
        except (redis.RedisError, OSError):
            return False


def seed_primary(url: str, items: int) -> None:
    """Write the items the web tier reads into db-primary (they replicate to db-replica). Best effort,
    retried."""
    for attempt in range(60):
        try:
            r = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
            pipe = r.pipeline(transaction=False)
            for n in range(items):
                pipe.set(keys.item(n), f"item-{n}", nx=True)
            pipe.execute()
            log.info("seeded %d items into the primary", items)
            return
        except (redis.RedisError, OSError) as e:
            if attempt % 10 == 0:
                log.info("seeding the primary failed (%s); retrying", e)
            time.sleep(2)


def burn_cpu(ms: float) -> None:
    end = time.perf_counter() + ms / 1000.0
    x = 0
    while time.perf_counter() < end:
        for i in range(200):
            x += i * i


class WebApp:
    def __init__(
        self,
        *,
        app_label: str = "web",
        read_url: str | None = None,
        work_ms: float = 20.0,
        items: int = 100,
        producer_factory: Any = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "demo_http_requests",
            "HTTP requests served by the application (/ and /enqueue).",
            ["app"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "demo_http_request_duration_seconds",
            "Time to serve / and /enqueue.",
            ["app"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.reads = Counter(
            "demo_db_reads", "Simulated reads against the read tier.", registry=self.registry
        )
        self.read_errors = Counter(
            "demo_db_read_errors", "Reads that failed against the read tier.", registry=self.registry
        )
        self.app_label = app_label
        self.requests.labels(app_label)  # the series exists (at 0) from the start
        self.duration.labels(app_label)
        self.work_ms = work_ms
        self.read_tier = ReadTier(read_url, items)
        self._producer_factory = producer_factory
        self._producer: Any = None
        self._producer_lock = threading.Lock()

    def producer(self) -> Any:
        with self._producer_lock:
            if self._producer is None:
                if self._producer_factory is None:
                    from .produce import Producer

                    self._producer = Producer()
                else:
                    self._producer = self._producer_factory()
            return self._producer

    def handle_root(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        ms = float(query.get("ms", [self.work_ms])[0])
        burn_cpu(max(0.0, min(ms, 5000.0)))
        ok = self.read_tier.read()
        self.reads.inc()
        if not ok:
            self.read_errors.inc()
        return 200, {"ok": True, "read": ok}

    def handle_enqueue(self, query: dict[str, list[str]]) -> tuple[int, dict[str, Any]]:
        from .produce import new_run_id, task_ids

        queue = query.get("queue", [""])[0]
        try:
            n = int(query.get("n", ["1"])[0])
            seconds = float(query.get("seconds", ["0.5"])[0])
            prio_raw = query.get("priority", [None])[0]
            priority = int(prio_raw) if prio_raw not in (None, "") else None
        except ValueError as e:
            return 400, {"error": str(e)}
        if not 1 <= n <= MAX_ENQUEUE:
            return 400, {"error": f"n must be in 1..{MAX_ENQUEUE}"}
        producer = self.producer()
        if queue not in producer.queues:
            return 400, {"error": f"unknown queue {queue!r}", "queues": producer.queues}
        ids = task_ids(queue, new_run_id())
        published = []
        try:
            for _ in range(n):
                tid = next(ids)
                producer.publish(queue, tid, seconds, priority)
                published.append(tid)
        except Exception as e:  # the broker is down: say so, with what did get out
            log.warning("enqueue failed after %d of %d: %s", len(published), n, e)
            return 503, {"error": str(e), "published": len(published)}
        return 200, {
            "queue": queue,
            "published": len(published),
            "first": published[0],
            "last": published[-1],
        }


def make_handler(web: WebApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "scalekeeper-demo"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: metrics tell the story
            pass

        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path == "/metrics":
                self._send(200, generate_latest(web.registry), CONTENT_TYPE_LATEST)
                return
            if url.path == "/healthz":
                self._send(200, b"ok\n", "text/plain")
                return
            routes = {"/": web.handle_root, "/enqueue": web.handle_enqueue}
            fn = routes.get(url.path)
            if fn is None:
                self._send(404, b'{"error": "not found"}')
                return
            start = time.perf_counter()
            try:
                code, payload = fn(parse_qs(url.query))
            except Exception as e:
                log.exception("request %s failed", self.path)
                code, payload = 500, {"error": str(e)}
            web.requests.labels(web.app_label).inc()
            web.duration.labels(web.app_label).observe(time.perf_counter() - start)
            self._send(code, json.dumps(payload).encode() + b"\n")

        do_POST = do_GET

    return Handler


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scalekeeper_demo.web", description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--addr", default="0.0.0.0")
    p.add_argument("--app-label", default="web", help="value of the app label of demo_http_requests_total")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    web = WebApp(
        app_label=args.app_label,
        read_url=settings.read_redis_url(),
        work_ms=settings.work_ms(),
        items=settings.read_items(),
    )
    primary = settings.primary_redis_url()
    if primary:
        threading.Thread(target=seed_primary, args=(primary, settings.read_items()), daemon=True).start()
    server = ThreadingHTTPServer((args.addr, args.port), make_handler(web))
    server.daemon_threads = True
    log.info(
        "web listening on %s:%d (work %.0f ms, reads from %s)",
        args.addr,
        args.port,
        web.work_ms,
        (settings.read_redis_url() or "nowhere: counted only").rsplit("@", 1)[-1],
    )

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.serve_forever()
    server.server_close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
