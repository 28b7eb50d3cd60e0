"""The queue exporter, as a real process against a real redis-server: waiting counts every priority list,
in-flight counts prefetched messages, and a Redis it cannot read yields no queue series at all."""

from __future__ import annotations

import time

import pytest
from kombu.transport.redis import PRIORITY_STEPS, Channel
from scalekeeper_demo import keys
from scalekeeper_demo.celery_app import make_app
from scalekeeper_demo.exporter import read_stats
from scalekeeper_demo.produce import Producer

from .conftest import Procs, q, scrape, wait_until

QUEUE_SERIES = (
    "celery_queue_waiting_tasks",
    "celery_queue_inflight_tasks",
    "celery_queue_published_total",
    "celery_queue_completed_total",
)


def test_key_layout_matches_the_installed_kombu() -> None:
    # The exporter reads kombu's Redis layout without importing kombu; this pins the two to each other.
    assert Channel.sep == keys.KOMBU_SEP
    assert set(PRIORITY_STEPS) <= set(keys.PRIORITY_LEVELS)
    assert (Channel.unacked_key, Channel.unacked_index_key) == (keys.UNACKED, keys.UNACKED_INDEX)
    assert Channel.keyprefix_queue == keys.BINDING
    # Every step any priority_steps setting can use has its list among the ones counted.
    ch = Channel.__new__(Channel)
    ch.priority_steps = list(range(10))
    assert {ch._q_for_pri("video", p) for p in range(10)} == set(keys.queue_list_keys("video"))


def test_waiting_counts_every_priority_list(redis_url: str, redis_server, procs: Procs) -> None:
    app = make_app(redis_url)
    producer = Producer(app)
    for i in range(20):
        producer.publish("video", f"v{i}", 0.1, priority=i % 10)
    for i in range(3):
        producer.publish("emails", f"e{i}", 0.1)
    producer.close()

    r = redis_server.client()
    lists = [k for k in r.keys("video*") if k == b"video" or k.startswith(b"video\x06\x16")]
    assert len(lists) > 1, f"priorities did not use sub-lists: {lists}"  # the test means something
    direct = sum(r.llen(k) for k in lists)
    assert direct == 20
    with app.connection_for_write() as conn:
        assert conn.default_channel._size("video") == 20  # kombu's own count agrees

    port = procs.exporter("exporter", redis_url)
    s = scrape(port)
    assert q(s, "celery_queue_waiting_tasks", "video") == direct
    assert q(s, "celery_queue_waiting_tasks", "emails") == 3
    assert q(s, "celery_queue_waiting_tasks", "reports") == 0
    for queue in ("video", "emails", "reports"):
        assert q(s, "celery_queue_inflight_tasks", queue) == 0
    assert q(s, "celery_queue_published_total", "video") == 20
    assert q(s, "celery_queue_completed_total", "video") == 0
    assert s[("celery_queue_exporter_up", ())] == 1


def test_inflight_counts_prefetched_messages(redis_url: str, redis_server, procs: Procs) -> None:
    producer = Producer(make_app(redis_url))
    for i in range(8):
        producer.publish("reports", f"r{i}", 6.0)
    producer.close()
    port = procs.exporter("exporter", redis_url)
    procs.worker("worker", redis_url, "reports", concurrency=1, prefetch=4)

    def prefetched() -> dict[str, float | None]:
        s = scrape(port)
        got = {name: q(s, name, "reports") for name in QUEUE_SERIES}
        return got if got["celery_queue_inflight_tasks"] == 4 else {}

    got = wait_until(prefetched, 15, "4 reports messages in flight")
    # concurrency 1 x prefetch 4: one running, three reserved, all unacked; the rest still waiting.
    assert got["celery_queue_inflight_tasks"] > 1
    assert got["celery_queue_waiting_tasks"] == 4
    assert redis_server.client().hlen("unacked") == 4
    assert got["celery_queue_completed_total"] == 0
    s = scrape(port)
    assert q(s, "celery_queue_inflight_tasks", "video") == 0
    assert s[("celery_queue_exporter_unattributed_inflight_tasks", ())] == 0


def test_redis_down_means_no_queue_series_not_zeros(extra_redis, procs: Procs) -> None:
    server = extra_redis()
    port = procs.exporter("exporter", server.url())
    s = scrape(port)
    for name in QUEUE_SERIES:
        assert q(s, name, "video") == 0, name  # Redis up and empty: real zeros
    assert s[("celery_queue_exporter_up", ())] == 1

    server.stop()
    t0 = time.monotonic()
    s = scrape(port)
    assert time.monotonic() - t0 < 5, "a scrape with Redis down must not hang"
    present = sorted({name for name, _ in s if name.startswith("celery_queue_") and "exporter" not in name})
    assert present == [], f"queue series exported while Redis is down: {present}"
    assert s[("celery_queue_exporter_up", ())] == 0
    assert s[("celery_queue_exporter_errors_total", ())] >= 1

    server.start()  # same port: the exporter recovers on its own
    s = wait_until(lambda: (x := scrape(port))[("celery_queue_exporter_up", ())] == 1 and x, 10, "recovery")
    assert q(s, "celery_queue_waiting_tasks", "video") == 0


@pytest.mark.parametrize("prefix", ["ns-a:"])
def test_key_prefix_isolates_installations_sharing_a_database(
    redis_url: str, redis_server, prefix: str
) -> None:
    producer = Producer(make_app(redis_url, key_prefix=prefix))
    for i in range(5):
        producer.publish("video", f"p{i}", 0.1, priority=9 if i % 2 else None)
    producer.close()
    r = redis_server.client()
    assert r.llen("video") == 0 and r.llen(f"{prefix}video") > 0
    mine = read_stats(r, ["video"], prefix)
    other = read_stats(r, ["video"], "")
    assert (mine.waiting["video"], mine.published["video"]) == (5, 5)
    assert (other.waiting["video"], other.published["video"]) == (0, 0)
