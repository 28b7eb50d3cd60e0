"""The exporter against a real rabbitmq-server (each test on its own virtual host) driven by real Celery:
waiting is messages_ready, prefetched is messages_unacknowledged, running tasks come from worker heartbeats,
queues are discovered from the management API."""

from __future__ import annotations

import urllib.parse

import pytest

from .celery_tasks import make_app
from .conftest import APP, Procs, RabbitMQServer, scrape, start_exporter, start_worker, value, wait_until


def _management(rabbitmq: RabbitMQServer) -> tuple[str, str]:
    return "--rabbitmq-management-url", f"http://127.0.0.1:{rabbitmq.management_port}"


def test_waiting_on_discovered_queues(amqp_url: str, rabbitmq: RabbitMQServer, procs: Procs) -> None:
    app = make_app(amqp_url)
    for _ in range(5):
        app.tasks["tests.sleep"].apply_async((0,), queue="video")
    for _ in range(2):
        app.tasks["tests.sleep"].apply_async((0,), queue="emails")
    port = start_exporter(procs, amqp_url, *_management(rabbitmq))
    vhost = urllib.parse.urlsplit(amqp_url).path
    broker = f"amqp://127.0.0.1:{rabbitmq.port}{vhost}"

    def counted() -> dict[str, float | None]:
        s = scrape(port)
        got = {
            q: value(s, "celery_queue_waiting_tasks", app=APP, broker=broker, queue=q)
            for q in ("video", "emails")
        }
        return got if got == {"video": 5, "emails": 2} else {}

    # RabbitMQ publishes its counts once a second (collect_statistics_interval).
    wait_until(counted, 15, "5 video and 2 emails messages ready")
    s = scrape(port)
    # The exporter's own event queue (celeryev.*) and Celery's control queues are not work queues.
    assert {dict(ls)["queue"] for (n, ls) in s if n == "celery_queue_waiting_tasks"} == {"video", "emails"}
    assert value(s, "celery_queue_prefetched_tasks", queue="video") == 0
    assert value(s, "scalekeeper_exporter_broker_up") == 1


@pytest.mark.parametrize("acks_late", [False, True], ids=["acks-early", "acks-late"])
def test_in_flight_is_prefetched_plus_running(
    amqp_url: str, rabbitmq: RabbitMQServer, procs: Procs, acks_late: bool
) -> None:
    app = make_app(amqp_url)
    for _ in range(8):
        app.tasks["tests.sleep"].apply_async((60,), queue="reports")
    port = start_exporter(procs, amqp_url, "--queues", "reports", *_management(rabbitmq))
    start_worker(procs, "reports-r", amqp_url, "reports", concurrency=2, acks_late=acks_late)

    # As on Redis: basic.qos 2; acking early, 2 run (acked) and 2 more are delivered; acking late, 2 in all.
    delivered = 2 if acks_late else 4
    expected = {
        "celery_queue_waiting_tasks": 8 - delivered,
        "celery_queue_prefetched_tasks": 2,
        "celery_queue_executing_tasks": 2,
        "celery_queue_inflight_tasks": delivered,
    }

    def settled() -> dict[str, float | None]:
        s = scrape(port)
        got = {name: value(s, name, queue="reports") for name in expected}
        return got if got == expected else {}

    wait_until(settled, 30, f"reports: {expected}")
    assert value(scrape(port), "celery_worker_executing_tasks", pod="reports-r") == 2


def test_unknown_queue_is_missing_not_zero(amqp_url: str, rabbitmq: RabbitMQServer, procs: Procs) -> None:
    port = start_exporter(procs, amqp_url, "--queues", "never-declared", *_management(rabbitmq))
    s = scrape(port)
    assert value(s, "scalekeeper_exporter_broker_up") == 1
    assert value(s, "celery_queue_waiting_tasks", queue="never-declared") is None
    assert value(s, "celery_queue_inflight_tasks", queue="never-declared") is None
