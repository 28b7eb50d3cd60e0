"""The Celery application the exporter's tests drive: stock settings plus events, nothing that knows of
scalekeeper. Workers load it with ``celery -A celery_tasks`` (BROKER_URL, ACKS_LATE, KEY_PREFIX from the
environment)."""

from __future__ import annotations

import os
import time

from celery import Celery


def make_app(broker_url: str, acks_late: bool = False, key_prefix: str = "") -> Celery:
    app = Celery("exporter-tests", broker=broker_url, set_as_current=False)
    if key_prefix:
        app.conf.broker_transport_options = {"global_keyprefix": key_prefix}
    app.conf.update(
        # The events the exporter reads: task-sent from producers, task and heartbeat events from workers.
        task_send_sent_event=True,
        worker_send_task_events=True,
        task_acks_late=acks_late,
        task_ignore_result=True,
        broker_connection_retry_on_startup=True,
    )

    @app.task(name="tests.sleep")
    def sleep(seconds: float) -> None:
        time.sleep(seconds)

    @app.task(name="tests.fail")
    def fail() -> None:
        raise RuntimeError("failing on purpose")

    return app


app = make_app(
    os.environ.get("BROKER_URL", "memory://"),
    os.environ.get("ACKS_LATE") == "1",
    os.environ.get("KEY_PREFIX", ""),
)
