"""kombu's ``global_keyprefix`` (``--redis-key-prefix``): two installations of the same Celery application on
one Redis database, each with its own prefix and the same queue names, real producers and real workers. The
exporter of one reads its queues, its unacked messages, its bindings and its events, and nothing of the
other's."""

from __future__ import annotations

import uuid

from tests.demo.conftest import RedisServer

from .celery_tasks import make_app
from .conftest import APP, Procs, scrape, start_exporter, start_worker, value, wait_until

OURS, THEIRS = "ns1:", "ns2:"


def test_key_prefix_reads_its_own_installation_only(
    redis_url: str, redis_server: RedisServer, procs: Procs
) -> None:
    # Names of this test's own: kombu writes a binding once per process (see test_redis).
    emails, video, reports = (f"{q}-{uuid.uuid4().hex[:6]}" for q in ("emails", "video", "reports"))
    port = start_exporter(procs, redis_url, "--redis-key-prefix", OURS, "--rate-window", "3")
    start_worker(procs, "theirs-a", redis_url, emails, concurrency=2, acks_late=False, key_prefix=THEIRS)
    start_worker(procs, "ours-a", redis_url, emails, concurrency=1, acks_late=False, key_prefix=OURS)

    # Theirs, sent while the exporter listens: 2 running, 2 prefetched, 3 waiting on emails; 5 waiting on
    # video, 1 on a queue only they have.
    theirs = make_app(redis_url, key_prefix=THEIRS)
    for _ in range(7):
        theirs.tasks["tests.sleep"].apply_async((60,), queue=emails)
    for _ in range(5):
        theirs.tasks["tests.sleep"].apply_async((0,), queue=video, priority=9)
    theirs.tasks["tests.sleep"].apply_async((0,), queue=reports)
    # Ours: 1 running, 1 prefetched, 2 waiting on emails; 2 waiting on video, in a priority list.
    ours = make_app(redis_url, key_prefix=OURS)
    for _ in range(4):
        ours.tasks["tests.sleep"].apply_async((60,), queue=emails)
    for _ in range(2):
        ours.tasks["tests.sleep"].apply_async((0,), queue=video, priority=9)

    r = redis_server.client()
    expected = {
        ("celery_queue_waiting_tasks", emails): 2,
        ("celery_queue_prefetched_tasks", emails): 1,
        ("celery_queue_executing_tasks", emails): 1,
        ("celery_queue_inflight_tasks", emails): 2,
        ("celery_queue_published_total", emails): 4,
        ("celery_queue_waiting_tasks", video): 2,
        ("celery_queue_published_total", video): 2,
    }

    def settled() -> bool:
        # The other installation really holds same-named work in the same database (else the test proves
        # nothing): its running tasks' messages in its own unacked hash, its waiting ones in its own lists.
        assert r.hlen(THEIRS + "unacked") == 2 and r.llen(THEIRS + emails) == 3
        s = scrape(port)
        got = {(name, queue): value(s, name, queue=queue) for name, queue in expected}
        assert got == expected, f"read {got}"
        return True

    wait_until(settled, 30, f"our queues only: {expected}")
    s = scrape(port)
    broker = f"redis://127.0.0.1:{redis_server.port}/0"
    # Discovered from our bindings only: their own queue is not ours, and no bare key exists at all.
    queues = {dict(ls)["queue"] for (n, ls) in s if n == "celery_queue_waiting_tasks"}
    assert queues == {emails, video}
    assert r.exists(emails, video, reports, "unacked", f"_kombu.binding.{emails}") == 0
    assert value(s, "celery_queue_waiting_tasks", app=APP, broker=broker, queue=emails) == 2
    # Heartbeats and remote control on our prefixed channels only.
    assert value(s, "celery_worker_executing_tasks", pod="ours-a") == 1
    assert value(s, "celery_worker_executing_tasks", pod="theirs-a") is None
    assert value(s, "scalekeeper_exporter_unattributed_prefetched_tasks") == 0
    assert value(s, "scalekeeper_exporter_broker_up") == 1
