"""Arrivals, completions, failures and runtimes from Celery's own events (a real worker on a real broker):
each task id's queue from task-sent, counters per queue, and every event counter missing until one full rate
window has been heard, after the start and again after the event connection came back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.demo.conftest import RedisServer

from .celery_tasks import make_app
from .conftest import Procs, RabbitMQServer, Samples, scrape, start_exporter, start_worker, value, wait_until

WINDOW = 4.0


@pytest.fixture(params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    """A clean broker of each kind: its URL and the exporter's arguments for it."""
    if request.param == "redis":
        return request.getfixturevalue("redis_url"), []
    rabbitmq: RabbitMQServer = request.getfixturevalue("rabbitmq")
    return rabbitmq.vhost(), ["--rabbitmq-management-url", f"http://127.0.0.1:{rabbitmq.management_port}"]


def test_counters_from_events_after_one_rate_window(broker: tuple[str, list[str]], procs: Procs) -> None:
    url, args = broker
    started = time.monotonic()
    port = start_exporter(procs, url, "--queues", "emails,video", "--rate-window", str(WINDOW), *args)
    start_worker(procs, "emails-a", url, "emails", concurrency=2, acks_late=False)
    app = make_app(url)
    for _ in range(4):
        app.tasks["tests.sleep"].apply_async((0.2,), queue="emails")
    for _ in range(2):
        app.tasks["tests.fail"].apply_async(queue="emails")

    def finished() -> dict[str, float | None]:
        s = scrape(port)
        # Before the window has passed the counters must be missing, however many events have arrived.
        if time.monotonic() - started < WINDOW - 0.5:
            assert value(s, "celery_queue_completed_total", queue="emails") is None, "counter before window"
            assert value(s, "celery_queue_published_total", queue="emails") is None, "counter before window"
            assert value(s, "celery_queue_task_runtime_seconds_count", queue="emails") is None
        got = {
            "published": value(s, "celery_queue_published_total", queue="emails"),
            "completed": value(s, "celery_queue_completed_total", queue="emails"),
            "failed": value(s, "celery_queue_failed_total", queue="emails"),
            "runtimes": value(s, "celery_queue_task_runtime_seconds_count", queue="emails"),
            "video": value(s, "celery_queue_completed_total", queue="video"),
        }
        return got if got["completed"] == 6 else {}

    got = wait_until(finished, 30, "6 emails completions counted")
    assert got == {"published": 6, "completed": 6, "failed": 2, "runtimes": 4, "video": 0}
    s = scrape(port)
    # 4 runs of sleep(0.2): at least 0.8 s in all, each in the 0.25 s bucket and above, none in 0.1 s.
    assert (value(s, "celery_queue_task_runtime_seconds_sum", queue="emails") or 0) >= 0.8
    assert value(s, "celery_queue_task_runtime_seconds_bucket", queue="emails", le="0.1") == 0
    assert value(s, "celery_queue_task_runtime_seconds_bucket", queue="emails", le="+Inf") == 4
    assert value(s, "scalekeeper_exporter_events_connected") == 1
    assert value(s, "scalekeeper_exporter_unattributed_finished_tasks_total") == 0


def events_connected(port: int, connected: int) -> Samples | None:
    s = scrape(port)
    return s if value(s, "scalekeeper_exporter_events_connected") == connected else None


def test_counters_missing_again_for_a_window_after_the_broker_came_back(tmp_path: Path, procs: Procs) -> None:
    own = RedisServer(tmp_path / "redis").start()
    try:
        url = own.url(0)
        window = 3.0
        port = start_exporter(procs, url, "--queues", "emails", "--rate-window", str(window))
        app = make_app(url)
        for _ in range(2):
            app.tasks["tests.sleep"].apply_async((0,), queue="emails")
        wait_until(
            lambda: value(scrape(port), "celery_queue_published_total", queue="emails") == 2,
            15,
            "2 published",
        )

        own.stop()
        s = wait_until(lambda: events_connected(port, 0), 15, "the exporter to notice its events are gone")
        assert value(s, "celery_queue_published_total", queue="emails") is None

        own.start()
        s = wait_until(lambda: events_connected(port, 1), 30, "the event connection to come back")
        back = time.monotonic()
        assert value(s, "celery_queue_published_total", queue="emails") is None  # within the window: missing
        assert (value(s, "scalekeeper_exporter_event_errors_total") or 0) >= 1
        make_app(url).tasks["tests.sleep"].apply_async((0,), queue="emails")
        # The counter kept counting (Prometheus' rate() copes with restarts, not with holes it cannot see).
        wait_until(
            lambda: value(scrape(port), "celery_queue_published_total", queue="emails") == 3,
            15,
            "3 published",
        )
        assert time.monotonic() - back >= window - 0.5
    finally:
        own.stop()
