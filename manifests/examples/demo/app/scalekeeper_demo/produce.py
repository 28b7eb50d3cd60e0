"""Publish ``demo.work`` tasks with unique ids, recording each in Redis.

  python -m scalekeeper_demo.produce --queue video --count 200 --rate 20 --seconds 0.5
  python -m scalekeeper_demo.produce --queue reports --trace trace.csv --speedup 10 --seconds 2
  python -m scalekeeper_demo.produce --queue video --schedule tasks.csv --start-at 1764150000 --record-timings

For each task: publish first, then (one MULTI) ``SADD demo:published:<queue> <id>`` and
``INCR demo:publishes:<queue>`` — so an id in the published set was really handed to the broker.
Prints a JSON summary line at the end.

``--schedule FILE``: CSV rows ``offset_seconds,service_seconds``, one per task: each task is published at its
offset and runs for its own service time (a bench replays a simulator's exact arrivals this way).
``--start-at EPOCH``: offsets count from that wall-clock instant, so several producers start together.
``--record-timings``: each task carries its publish time (wall clock) and records (enqueued, started,
finished) in ``demo:timings:<queue>`` when it finishes (keys.timings).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import redis
from celery import Celery

from . import keys, settings, trace
from .celery_app import TASK_NAME, make_app


class Producer:
    def __init__(self, app: Celery | None = None, *, redis_url: str | None = None) -> None:
        self.app = app or make_app()
        self.prefix: str = self.app.conf.demo_key_prefix
        self.redis = redis.Redis.from_url(redis_url or self.app.conf.demo_redis_url, socket_timeout=10)
        self.queues = [q.name for q in self.app.conf.task_queues]

    def publish(
        self,
        queue: str,
        task_id: str,
        seconds: float,
        priority: int | None = None,
        *,
        record_timings: bool = False,
    ) -> None:
        if queue not in self.queues:
            raise ValueError(f"unknown queue {queue!r}; known: {', '.join(self.queues)}")
        opts: dict[str, Any] = {"queue": queue, "task_id": task_id}
        if priority is not None:
            opts["priority"] = int(priority)
        kwargs: dict[str, Any] = {"queue": queue}
        if record_timings:
            kwargs["enqueued"] = time.time()  # wall clock: the workers' clocks are compared with it
        self.app.send_task(TASK_NAME, args=(task_id, float(seconds)), kwargs=kwargs, **opts)
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(keys.published(queue, self.prefix), task_id)
        pipe.incr(keys.publishes(queue, self.prefix))
        pipe.execute()

    def close(self) -> None:
        self.redis.close()
        self.app.close()


def new_run_id() -> str:
    return uuid.uuid4().hex[:10]


def task_ids(queue: str, run_id: str) -> Iterator[str]:
    for i in itertools.count():
        yield f"{queue}-{run_id}-{i:06d}"


def read_schedule(path: str) -> list[tuple[float, float]]:
    """Rows ``offset_seconds,service_seconds`` of a --schedule file, in offset order (a header is
    skipped)."""
    rows = trace.read_pairs(path, "offset_seconds,service_seconds")
    for offset, seconds in rows:
        if offset < 0 or seconds < 0:
            raise ValueError(f"{path}: negative value in row {[offset, seconds]!r}")
    return rows


def parse_priorities(spec: str | None) -> Iterator[int | None]:
    """``None``: no priority; ``"5"``: always 5; ``"0,3,9"``: cycle through them."""
    if not spec:
        return itertools.repeat(None)
    values = [int(p) for p in spec.split(",") if p.strip()]
    for p in values:
        if not 0 <= p <= 9:
            raise ValueError(f"priority {p} outside 0..9")
    return itertools.cycle(values)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scalekeeper_demo.produce", description=__doc__.split("\n")[0])
    p.add_argument("--queue", required=True)
    p.add_argument("--count", type=int, default=0, help="tasks to publish (without --trace)")
    p.add_argument("--rate", type=float, default=0.0, help="tasks per second; 0 = as fast as possible")
    p.add_argument("--seconds", type=float, default=0.5, help="run time of each task")
    p.add_argument("--priority", default=None, help="a priority 0..9, or a comma list to cycle through")
    p.add_argument("--trace", default=None, help="CSV of t_seconds,arrivals to replay")
    p.add_argument("--speedup", type=float, default=1.0, help="time compression of the trace")
    p.add_argument("--schedule", default=None, help="CSV of offset_seconds,service_seconds, one row a task")
    p.add_argument("--start-at", type=float, default=None, help="wall-clock epoch the offsets count from")
    p.add_argument("--record-timings", action="store_true", help="tasks record (enqueued, started, finished)")
    p.add_argument("--max-duration", type=float, default=None, help="stop after this many wall seconds")
    p.add_argument("--run-id", default=None, help="id part shared by this run's task ids (default: random)")
    p.add_argument("--broker-url", default=None)
    args = p.parse_args(argv)

    services: Iterator[float] = itertools.repeat(args.seconds)
    if args.schedule:
        rows = read_schedule(args.schedule)
        offsets: Iterator[float] = iter([o for o, _ in rows])
        services = iter([s for _, s in rows])
    elif args.trace:
        offsets = trace.schedule(trace.read_trace(args.trace), args.speedup)
    elif args.count > 0:
        offsets = trace.uniform(args.count, args.rate)
    else:
        p.error("give --count N, --trace FILE or --schedule FILE")

    producer = Producer(make_app(args.broker_url) if args.broker_url else None)
    run_id = args.run_id or new_run_id()
    ids = task_ids(args.queue, run_id)
    prios = parse_priorities(args.priority)
    if args.start_at is not None:
        time.sleep(max(0.0, args.start_at - time.time()))
    started = time.monotonic()

    def one(_: int) -> None:
        producer.publish(
            args.queue, next(ids), next(services), next(prios), record_timings=args.record_timings
        )

    try:
        n = trace.paced(offsets, one, deadline=args.max_duration)
    finally:
        producer.close()
    summary = {
        "queue": args.queue,
        "run_id": run_id,
        "published": n,
        "elapsed_seconds": round(time.monotonic() - started, 3),
        "broker": (args.broker_url or settings.broker_url()).rsplit("@", 1)[-1],
    }
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
