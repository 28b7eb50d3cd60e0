"""The exposition of celery-redis-prometheus 2.0 (PyPI), the exporter the `celery-redis-prometheus` preset
reads: run for real (``celery prometheus --queue-length``) against a real redis-server, a real Celery worker
and a producer with events on, its scrape holds every metric and label the preset's queries select, with
the values the preset reads them as (waiting and prefetched in the queue length; started minus ended the
running tasks; succeeded and failed the completions)."""

from __future__ import annotations

import re
import sys
import uuid

from scalekeeper.metrics.presets import PRESETS, Preset
from scalekeeper.metrics.promql import fill_template
from tests.demo.conftest import RedisServer, free_port, http_get

from .celery_tasks import make_app
from .conftest import Procs, Samples, process_env, scrape, start_worker, value, wait_until

_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_]\w*)(=~|=)"((?:[^"\\]|\\.)*)"')


def selected(samples: Samples, selector: str) -> list[float]:
    """The values of the samples a PromQL selector with `=` and `=~` matchers picks."""
    m = _SELECTOR.fullmatch(selector)
    assert m is not None, selector
    name, matchers = m.group(1), _MATCHER.findall(m.group(2))
    assert matchers, selector

    def picks(labels: dict[str, str]) -> bool:
        return all(
            (re.fullmatch(want, labels.get(label, "")) if op == "=~" else labels.get(label) == want)
            for label, op, want in matchers
        )

    return [v for (n, ls), v in samples.items() if n == name and picks(dict(ls))]


def start_crp_exporter(procs: Procs, redis: RedisServer, broker_url: str, queue: str) -> int:
    port = free_port()
    argv = [sys.executable, "-m", "celery", "-A", "crp_tasks", "prometheus", "--host", "127.0.0.1"]
    procs.start("crp", [*argv, "--port", str(port), "--queue-length"], process_env(broker_url, QUEUES=queue))
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200, 30, "the exporter to serve")
    # Its event queue is bound to the celeryev exchange once it listens: events published before are lost.
    wait_until(lambda: redis.client().scard("_kombu.binding.celeryev") > 0, 20, "the exporter to hear events")
    return port


def test_the_preset_reads_what_celery_redis_prometheus_exports(
    redis_url: str, redis_server: RedisServer, procs: Procs
) -> None:
    # kombu remembers, per process, the bindings it declared: a name of this test's own (see test_redis.py).
    queue = f"emails-{uuid.uuid4().hex[:6]}"
    producer = make_app(redis_url)
    sleep, fail = producer.tasks["tests.sleep"], producer.tasks["tests.fail"]
    sleep.apply_async((0,), queue=queue)  # sent before the exporter listens: its routing key stays unknown
    port = start_crp_exporter(procs, redis_server, redis_url, queue)
    start_worker(procs, "crp-a", redis_url, queue, concurrency=2, acks_late=False)

    for _ in range(3):
        sleep.apply_async((0,), queue=queue)
    fail.apply_async(queue=queue)

    def counted(s: Samples, state: str) -> float | None:
        return value(s, "celery_tasks_total", queue=queue, state=state)

    def finished() -> Samples | None:
        s = scrape(port)
        return s if (counted(s, "succeeded"), counted(s, "failed")) == (3, 1) else None

    s = wait_until(finished, 20, "3 succeeded and 1 failed task counted")
    assert counted(s, "started") == 4
    # The task sent before the exporter listened: counted apart, under the queue "None", started and ended.
    assert value(s, "celery_tasks_total", queue="None", state="started") == 1
    assert value(s, "celery_tasks_total", queue="None", state="succeeded") == 1

    # Two long tasks fill the worker's 2 processes; of 3 more, prefetch (2 x multiplier 1) takes 2 off the
    # list into Redis' unacked hash (acked early, the running ones are not there any more), 1 stays listed.
    for _ in range(2):
        sleep.apply_async((60,), queue=queue)

    def running_two() -> Samples | None:
        s = scrape(port)
        return s if counted(s, "started") == 6 else None

    wait_until(running_two, 20, "two long tasks started")
    for _ in range(3):
        sleep.apply_async((0,), queue=queue)

    def settled() -> Samples | None:
        s = scrape(port)
        return s if value(s, "celery_queue_length", queue=queue) == 3 else None

    s = wait_until(settled, 20, "3 tasks waiting or prefetched")
    assert redis_server.client().llen(queue) == 1

    preset = PRESETS[Preset.CELERY_REDIS_PROMETHEUS]
    templates = {
        "waiting": preset.waiting,
        "in_flight": preset.in_flight,
        "completed": preset.completion_rate,
    }
    filled = {k: fill_template(t, app="unused", queue=queue) for k, t in templates.items()}
    selectors = {k: [m.group(0) for m in _SELECTOR.finditer(q)] for k, q in filled.items()}
    # Every series a preset query selects is in the scrape: the names, the labels and their values.
    for key, found in selectors.items():
        assert found, key
        for selector in found:
            assert selected(s, selector), f"{key}: {selector} selects nothing"
    # What the queries compute from them (counter values here, where the queries take rates of counters).
    (waiting,) = selectors["waiting"]
    started, ended = selectors["in_flight"]
    (completed,) = selectors["completed"]
    assert sum(selected(s, waiting)) == 3
    assert max(sum(selected(s, started)) - sum(selected(s, ended)), 0) == 2
    assert sum(selected(s, completed)) == 4
