"""The web tier as a real process: request and read counters, reads served by a real Redis replica
(redis-server --replicaof) of the primary the app seeds, and /enqueue publishing real tasks."""

from __future__ import annotations

import json
import subprocess
import sys

from scalekeeper_demo import keys
from scalekeeper_demo.web import WebApp

from .conftest import Procs, demo_env, free_port, http_get, scrape, wait_until


def _web(procs: Procs, broker_url: str, **env: str) -> int:
    port = free_port()
    procs.start(
        "web",
        [sys.executable, "-m", "scalekeeper_demo.web", "--port", str(port), "--addr", "127.0.0.1"],
        demo_env(broker_url, WORK_MS="5", READ_ITEMS="10", **env),
    )
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 20, "web to serve")
    return port


def test_requests_and_reads_against_a_real_replica(
    redis_url: str, redis_server, extra_redis, procs: Procs
) -> None:
    primary = extra_redis()
    replica = extra_redis("--replicaof", "127.0.0.1", str(primary.port), "--replica-read-only", "yes")
    port = _web(procs, redis_url, READ_REDIS_URL=replica.url(), PRIMARY_REDIS_URL=primary.url())
    # The app seeds the primary; the items reach the replica by replication.
    wait_until(lambda: replica.client().get(keys.item(9)) == b"item-9", 20, "seeded items on the replica")
    hits_before = int(replica.client().info("stats")["keyspace_hits"])

    for _ in range(5):
        code, body = http_get(f"http://127.0.0.1:{port}/")
        assert code == 200 and json.loads(body)["read"] is True, body
    s = scrape(port)
    assert s[("demo_http_requests_total", (("app", "web"),))] == 5
    assert s[("demo_db_reads_total", ())] == 5
    assert s[("demo_db_read_errors_total", ())] == 0
    assert int(replica.client().info("stats")["keyspace_hits"]) - hits_before == 5  # the replica served them

    code, body = http_get(f"http://127.0.0.1:{port}/enqueue?queue=video&n=3&seconds=0.1&priority=6")
    assert code == 200, body
    r = redis_server.client()
    assert r.scard(keys.published("video")) == 3
    assert sum(r.llen(k) for k in keys.queue_list_keys("video")) == 3
    assert http_get(f"http://127.0.0.1:{port}/enqueue?queue=nope&n=1")[0] == 400

    replica.stop()  # the read tier gone: requests still served, the failed read counted
    code, body = http_get(f"http://127.0.0.1:{port}/")
    assert code == 200 and json.loads(body)["read"] is False
    s = scrape(port)
    # 5 + 2 /enqueue (one refused) + 1; /metrics and /healthz are not counted
    assert s[("demo_http_requests_total", (("app", "web"),))] == 8
    assert s[("demo_db_reads_total", ())] == 6
    assert s[("demo_db_read_errors_total", ())] == 1


def test_without_a_read_tier_reads_are_only_counted() -> None:
    web = WebApp(read_url=None, work_ms=1)
    code, payload = web.handle_root({})
    assert (code, payload["read"]) == (200, True)
    assert web.reads._value.get() == 1 and web.read_errors._value.get() == 0


def test_load_generator_drives_the_request_counter(redis_url: str, procs: Procs) -> None:
    port = _web(procs, redis_url)
    out = subprocess.run(
        [sys.executable, "-m", "scalekeeper_demo.load", "--url", f"http://127.0.0.1:{port}/", "--rate", "40",
         "--duration", "1.5", "--concurrency", "8"],
        env=demo_env(redis_url), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["offered"] == 60 and summary["errors"] == 0 and summary["dropped"] == 0, summary
    assert summary["ok"] == 60
    s = scrape(port)
    assert s[("demo_http_requests_total", (("app", "web"),))] == 60
    assert s[("demo_db_reads_total", ())] == 60  # no read tier configured: counted only
