"""The exporter against a real redis-server driven by real Celery: waiting counts every priority list, queues
are discovered from kombu's bindings, unacked messages are attributed to their queue, running tasks come from
worker heartbeats, and an unreadable Redis yields no queue series at all."""

from __future__ import annotations

import uuid

import pytest
from kombu.transport.redis import Channel

from tests.demo.conftest import RedisServer

from .celery_tasks import make_app
from .conftest import APP, Procs, scrape, start_exporter, start_worker, value, wait_until


def test_waiting_counts_every_priority_list_of_discovered_queues(
    redis_url: str, redis_server: RedisServer, procs: Procs
) -> None:
    # kombu remembers the bindings it made for the whole process (virtual Transport.state), so after another
    # test's FLUSHALL it would not bind a queue name it bound before: these names are this test's own.
    video, emails = f"video-{uuid.uuid4().hex[:6]}", f"emails-{uuid.uuid4().hex[:6]}"
    app = make_app(redis_url)
    for i in range(10):
        app.tasks["tests.sleep"].apply_async((0,), queue=video, priority=i)
    for _ in range(3):
        app.tasks["tests.sleep"].apply_async((0,), queue=emails)
    r = redis_server.client()
    lists = [
        k for k in r.keys(video + "*") if k == video.encode() or k.startswith((video + Channel.sep).encode())
    ]
    assert len(lists) > 1, f"priorities did not use sub-lists: {lists}"  # the test means something

    port = start_exporter(procs, redis_url)  # no --queues: discovered from _kombu.binding.*
    s = scrape(port)
    broker = f"redis://127.0.0.1:{redis_server.port}/0"
    assert value(s, "celery_queue_waiting_tasks", app=APP, broker=broker, queue=video) == 10
    assert value(s, "celery_queue_waiting_tasks", app=APP, broker=broker, queue=emails) == 3
    assert value(s, "celery_queue_prefetched_tasks", queue=video) == 0
    # Celery's own event and control queues are not work queues.
    queues = {dict(ls)["queue"] for (n, ls) in s if n == "celery_queue_waiting_tasks"}
    assert queues == {video, emails}
    assert value(s, "scalekeeper_exporter_broker_up", app=APP, broker=broker) == 1
    # Fewer than one rate window after the start: event counters are missing, not zero.
    assert value(s, "celery_queue_completed_total", queue=emails) is None
    assert value(s, "celery_queue_published_total", queue=emails) is None


@pytest.mark.parametrize("acks_late", [False, True], ids=["acks-early", "acks-late"])
def test_in_flight_is_prefetched_plus_running(redis_url: str, procs: Procs, acks_late: bool) -> None:
    app = make_app(redis_url)
    for _ in range(8):
        app.tasks["tests.sleep"].apply_async((60,), queue="reports")
    port = start_exporter(procs, redis_url, "--queues", "reports,emails")
    start_worker(procs, "reports-a", redis_url, "reports", concurrency=2, acks_late=acks_late)

    # concurrency 2 x prefetch multiplier 1: the consumer holds at most 2 unacked messages. Acking early, the
    # 2 running tasks are acked and 2 more are prefetched; acking late, the 2 running ones are the 2 unacked.
    prefetched_running = 2 if acks_late else 4
    expected = {
        "celery_queue_waiting_tasks": 8 - prefetched_running,
        "celery_queue_prefetched_tasks": 2,
        "celery_queue_executing_tasks": 2,
        "celery_queue_inflight_tasks": prefetched_running,
    }

    def settled() -> dict[str, float | None]:
        s = scrape(port)
        got = {name: value(s, name, queue="reports") for name in expected}
        got["pod"] = value(s, "celery_worker_executing_tasks", pod="reports-a", worker="celery@reports-a")
        return got if got == {**expected, "pod": 2} else {}

    wait_until(settled, 30, f"reports: {expected}")
    s = scrape(port)
    # The other listed queue has no worker and no message: known zeros, not missing.
    assert value(s, "celery_queue_executing_tasks", queue="emails") == 0
    assert value(s, "celery_queue_inflight_tasks", queue="emails") == 0
    assert value(s, "scalekeeper_exporter_unattributed_prefetched_tasks") == 0


def test_unreadable_redis_gives_no_queue_series(procs: Procs, tmp_path) -> None:
    own = RedisServer(tmp_path / "redis").start()
    url = own.url(0)
    make_app(url).tasks["tests.sleep"].apply_async((0,), queue="emails")
    port = start_exporter(procs, url, "--queues", "emails")
    assert value(scrape(port), "celery_queue_waiting_tasks", queue="emails") == 1
    own.stop()
    s = scrape(port)
    assert value(s, "celery_queue_waiting_tasks", queue="emails") is None
    assert value(s, "celery_queue_prefetched_tasks", queue="emails") is None
    assert value(s, "celery_queue_inflight_tasks", queue="emails") is None
    assert value(s, "scalekeeper_exporter_broker_up") == 0
    assert value(s, "scalekeeper_exporter_scrape_errors_total") is not None
    assert value(s, "scalekeeper_exporter_scrape_errors_total") >= 1
