"""No task lost and none run twice when a worker is scaled down (SIGTERM) in the middle of its work.

A Kubernetes scale-down sends a worker pod SIGTERM to PID 1 (celery's main process), then SIGKILL after
terminationGracePeriodSeconds. Here: real redis-server, real `celery worker` processes, SIGTERM to the main
process only (as the kubelet sends it)."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from scalekeeper_demo import keys
from scalekeeper_demo.celery_app import make_app
from scalekeeper_demo.produce import Producer

from .conftest import Procs, wait_until

QUEUE = "video"
N = 24
SECONDS = 1.0
CONCURRENCY = 2
PREFETCH = 3  # reserves CONCURRENCY x PREFETCH = 6 messages: 4 of them prefetched and not started


def _counts(r) -> dict[str, int]:
    pipe = r.pipeline(transaction=True)
    pipe.get(keys.started(QUEUE))
    pipe.get(keys.completions(QUEUE))
    pipe.scard(keys.completed(QUEUE))
    pipe.hlen(keys.unacked())
    for k in keys.queue_list_keys(QUEUE):
        pipe.llen(k)
    started, completions, distinct, unacked, *lens = pipe.execute()
    return {
        "started": int(started or 0),
        "completions": int(completions or 0),
        "distinct": int(distinct),
        "unacked": int(unacked),
        "waiting": sum(lens),
    }


def test_sigterm_mid_run_loses_nothing_and_runs_nothing_twice(
    redis_url: str, redis_server, procs: Procs
) -> None:
    r = redis_server.client()
    producer = Producer(make_app(redis_url))
    ids = [f"{QUEUE}-sigterm-{i:03d}" for i in range(N)]
    for i, tid in enumerate(ids):
        producer.publish(QUEUE, tid, SECONDS, priority=(0, 3, 6, 9)[i % 4])
    producer.close()
    assert r.scard(keys.published(QUEUE)) == N

    a = procs.worker("worker-a", redis_url, QUEUE, CONCURRENCY, PREFETCH)
    # Mid-run: the second round of tasks is executing and the prefetch buffer is full.
    at_term = wait_until(
        lambda: (
            (c := _counts(r))["started"] > CONCURRENCY
            and c["started"] > c["completions"]
            and c["unacked"] > CONCURRENCY
            and c
        ),
        20,
        "worker A running its second round with prefetched messages",
        interval=0.02,
    )
    # Not in the instant the worker is still taking messages in: a SIGTERM landing inside a receive can
    # leave Celery's warm shutdown hanging (its signal-timing race, celery/celery#7339), which a CI run hit.
    # Wait until the reserved count holds still for 0.2 s, still mid-task.
    for _ in range(15):
        time.sleep(0.2)
        now = _counts(r)
        if now["unacked"] == at_term["unacked"] and now["started"] > now["completions"]:
            break
        at_term = now
    os.kill(a.pid, signal.SIGTERM)  # the main process only, as the kubelet does
    t0 = time.monotonic()
    try:
        rc = a.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"worker A did not finish its warm shutdown in 30 s\n{procs.tail('worker-a')}"
        ) from None
    shutdown_seconds = time.monotonic() - t0
    log_a = procs.log("worker-a").read_text()
    assert rc == 0, procs.tail("worker-a")
    assert "Warm shutdown" in log_a

    after_a = _counts(r)
    # Every execution A started, it finished (nothing interrupted mid-task) ...
    assert after_a["started"] == after_a["completions"] == after_a["distinct"], after_a
    # ... it did not drain its prefetch buffer before leaving (it took ~one task's time, not four) ...
    assert shutdown_seconds < 2 * SECONDS + 8, shutdown_seconds
    assert after_a["completions"] < at_term["started"] + at_term["unacked"], (at_term, after_a)
    # ... and what it had reserved but not run went back to the queue: nothing unacked, all the rest waiting.
    assert after_a["unacked"] == 0, after_a
    assert after_a["waiting"] == N - after_a["completions"], after_a
    assert "Restoring" in log_a and "unacknowledged message" in log_a, procs.tail("worker-a")

    procs.worker("worker-b", redis_url, QUEUE, concurrency=4, prefetch=1)
    wait_until(lambda: _counts(r)["completions"] >= N, 60, f"all {N} tasks completed", interval=0.1)
    time.sleep(SECONDS + 0.5)  # a duplicate execution, if any, would land within a task's time

    final = _counts(r)
    assert final["distinct"] == N, final  # nothing lost
    assert final["completions"] == N, final  # nothing ran twice
    assert final["started"] == N, final
    assert final["unacked"] == 0 and final["waiting"] == 0, final
    assert {m.decode() for m in r.smembers(keys.completed(QUEUE))} == set(ids)
    # The restored messages really went through the restore path (kombu marks them redelivered).
    redelivered = r.scard(keys.redelivered(QUEUE))
    assert redelivered >= 1, "no task ran from a restored message: the test did not exercise the restore"
