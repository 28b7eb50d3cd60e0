"""The Celery app: queues emails, video, reports and one task, ``demo.work(task_id, seconds)``.

Run a worker:
  celery -A scalekeeper_demo.celery_app worker -Q video --concurrency 2 --prefetch-multiplier 1 \\
      --without-gossip --without-mingle

Settings that make a scale-down lose no task and run none twice (README.md, "Exactly once across SIGTERM"):
  task_acks_late=True
      ack after the task returned, so no message is acked before it ran
  task_reject_on_worker_lost=True
      a pool child that dies mid-task requeues its message instead of acking it
  visibility_timeout
      longer than any delivery-to-ack time, so no live worker's message is restored to another
  warm shutdown on SIGTERM
      running tasks finish and ack; prefetched, unstarted messages go back to their queue when the worker
      closes its channel (kombu's QoS.restore_unacked_once)
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import redis
from celery import Celery
from kombu.entity import Exchange, Queue

from . import keys, settings

TASK_NAME = "demo.work"


def make_app(
    broker_url: str | None = None,
    *,
    key_prefix: str | None = None,
    queues: list[str] | None = None,
    visibility_timeout: int | None = None,
    demo_redis_url: str | None = None,
    max_task_seconds: float | None = None,
) -> Celery:
    """A Celery app configured from the arguments, else from the environment (settings)."""
    url = broker_url or settings.broker_url()
    prefix = settings.key_prefix() if key_prefix is None else key_prefix
    names = queues or settings.queues()
    transport_options: dict[str, Any] = {
        "visibility_timeout": visibility_timeout or settings.visibility_timeout(),
    }
    if prefix:
        transport_options["global_keyprefix"] = prefix
    app = Celery("scalekeeper_demo", broker=url, set_as_current=False)
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        # A direct exchange per queue, routing key = queue name: what task_create_missing_queues would make,
        # declared so a worker's bindings exist before the first publish and the exporter can attribute
        # prefetched messages by (exchange, routing key).
        task_queues=[Queue(q, Exchange(q, type="direct"), routing_key=q) for q in names],  # type: ignore[no-untyped-call]
        task_default_queue=names[0],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        # Celery's events, which scalekeeper's exporter turns into executing counts, arrivals, completions and
        # runtimes: task events from the workers, and task-sent from the producers.
        worker_send_task_events=True,
        task_send_sent_event=True,
        worker_hijack_root_logger=True,
        # Our own settings, read by the task in the worker's pool processes.
        demo_redis_url=demo_redis_url or (settings.demo_redis_url() if broker_url is None else url),
        demo_key_prefix=prefix,
        demo_max_task_seconds=settings.max_task_seconds() if max_task_seconds is None else max_task_seconds,
    )
    app.task(name=TASK_NAME, bind=True, ignore_result=True)(work)
    return app


_clients: dict[str, redis.Redis] = {}


def _client(url: str) -> redis.Redis:
    # One client per URL per process; redis-py's pool notices a fork and reconnects in the child.
    c = _clients.get(url)
    if c is None:
        c = _clients[url] = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    return c


def _burn(seconds: float) -> None:
    end = time.monotonic() + seconds
    x = 0
    while time.monotonic() < end:
        for i in range(1000):
            x += i * i


def work(
    self: Any, task_id: str, seconds: float, queue: str | None = None, enqueued: float | None = None
) -> str:
    """Run for ``seconds`` (clamped to MAX_TASK_SECONDS), then record the completion in Redis.

    ``SADD demo:completed:<queue> <task_id>`` and ``INCR demo:completions:<queue>`` in one MULTI: the counter
    counts executions and the set distinct tasks, so a task that ran twice shows as counter > SCARD.
    ``enqueued``: the producer's wall clock at publish (epoch seconds); when given, the same MULTI also
    appends {"id", "enqueued", "started", "finished", "host"} to ``demo:timings:<queue>``, so a bench can
    read each task's real wait (started - enqueued) afterwards.
    """
    started_at = time.time()
    conf = self.app.conf
    delivery = self.request.delivery_info or {}
    q = queue or delivery.get("routing_key") or "unknown"
    prefix = conf.demo_key_prefix
    r = _client(conf.demo_redis_url)
    r.incr(keys.started(q, prefix))
    if delivery.get("redelivered"):
        r.sadd(keys.redelivered(q, prefix), task_id)
    secs = max(0.0, min(float(seconds), float(conf.demo_max_task_seconds)))
    if settings.task_mode() == "burn":
        _burn(secs)
    else:
        time.sleep(secs)
    pipe = r.pipeline(transaction=True)
    pipe.sadd(keys.completed(q, prefix), task_id)
    pipe.incr(keys.completions(q, prefix))
    if enqueued is not None:
        record = {
            "id": task_id,
            "enqueued": float(enqueued),
            "started": started_at,
            "finished": time.time(),
            "host": socket.gethostname(),
        }
        pipe.rpush(keys.timings(q, prefix), json.dumps(record))
    pipe.execute()
    return task_id


# The app the celery CLI (-A scalekeeper_demo.celery_app) and the web tier use: configured from the
# environment.
app = make_app()
