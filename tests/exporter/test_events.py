"""Arrivals, completions, failures and runtimes from Celery's own events (a real worker on a real Redis): each
task id's queue from task-sent, counters per queue, and every event counter missing until one full rate
window has been heard."""

from __future__ import annotations

import time

from .celery_tasks import make_app
from .conftest import Procs, scrape, start_exporter, start_worker, value, wait_until

WINDOW = 6.0


def test_counters_from_events_after_one_rate_window(redis_url: str, procs: Procs) -> None:
    started = time.monotonic()
    port = start_exporter(procs, redis_url, "--queues", "emails,video", "--rate-window", str(WINDOW))
    start_worker(procs, "emails-a", redis_url, "emails", concurrency=2, acks_late=False)
    app = make_app(redis_url)
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
    assert value(s, "celery_queue_task_runtime_seconds_sum", queue="emails") >= 0.8
    assert value(s, "celery_queue_task_runtime_seconds_bucket", queue="emails", le="0.1") == 0
    assert value(s, "celery_queue_task_runtime_seconds_bucket", queue="emails", le="+Inf") == 4
    assert value(s, "scalekeeper_exporter_events_connected") == 1
    assert value(s, "scalekeeper_exporter_unattributed_finished_tasks_total") == 0
