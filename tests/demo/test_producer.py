"""The producer CLI: unique ids recorded as published, a paced rate, and a time-compressed trace replay."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scalekeeper_demo import keys, trace

from .conftest import demo_env


def _produce(redis_url: str, *args: str, env_extra: dict[str, str] | None = None) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "scalekeeper_demo.produce", *args],
        env=demo_env(redis_url, **(env_extra or {})),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_rate_and_unique_ids(redis_url: str, redis_server) -> None:
    summary = _produce(redis_url, "--queue", "emails", "--count", "10", "--rate", "20", "--seconds", "0")
    assert summary["published"] == 10
    assert 0.4 <= float(summary["elapsed_seconds"]) < 5  # 10 at 20/s: the last one at 0.45 s
    r = redis_server.client()
    assert r.scard(keys.published("emails")) == 10
    assert int(r.get(keys.publishes("emails"))) == 10
    assert r.llen("emails") == 10
    _produce(redis_url, "--queue", "emails", "--count", "5", "--priority", "0,9")
    assert r.scard(keys.published("emails")) == 15  # a second run's ids do not collide with the first's


def test_trace_replay_time_compressed(redis_url: str, redis_server, tmp_path: Path) -> None:
    csv = tmp_path / "trace.csv"
    csv.write_text("t_seconds,arrivals\n0,3\n10,5\n20,2.5\n30,0.5\n")
    summary = _produce(
        redis_url, "--queue", "reports", "--trace", str(csv), "--speedup", "20", "--seconds", "0"
    )
    assert summary["published"] == 11  # 3 + 5 + 2.5 + 0.5, fractions carried
    # 30 trace seconds at 20x: the last arrival about 1.5 s in.
    assert 1.3 <= float(summary["elapsed_seconds"]) < 6
    assert redis_server.client().scard(keys.published("reports")) == 11


def test_trace_schedule() -> None:
    rows = [(0.0, 2.0), (10.0, 1.0), (20.0, 0.0), (30.0, 4.0)]
    offs = list(trace.schedule(rows, speedup=10))
    assert offs == pytest.approx([0.0, 0.5, 1.0, 3.0, 3.25, 3.5, 3.75])
    assert offs == sorted(offs)


def test_schedule_with_timings(redis_url: str, redis_server, procs, tmp_path: Path) -> None:
    """--schedule publishes each row at its offset with its own service time; with --record-timings the
    worker records (enqueued, started, finished) per task, and started - enqueued is the real wait."""
    from .conftest import wait_until

    schedule = tmp_path / "tasks.csv"
    schedule.write_text("offset_seconds,service_seconds\n0,0.2\n0.3,0\n0.6,0.4\n")
    procs.worker("worker", redis_url, "video", concurrency=1, prefetch=1, KEY_PREFIX="t:")
    start_at = time.time() + 1.0
    summary = _produce(
        redis_url,
        "--queue",
        "video",
        "--schedule",
        str(schedule),
        "--start-at",
        str(start_at),
        "--record-timings",
        "--broker-url",
        redis_url,
        env_extra={"KEY_PREFIX": "t:"},
    )
    assert summary["published"] == 3
    r = redis_server.client()
    wait_until(lambda: r.llen(keys.timings("video", "t:")) == 3, 20, "three timing records")
    records = sorted(
        (json.loads(x) for x in r.lrange(keys.timings("video", "t:"), 0, -1)), key=lambda x: x["id"]
    )
    offsets = [rec["enqueued"] - start_at for rec in records]
    assert offsets == pytest.approx([0.0, 0.3, 0.6], abs=0.25)  # published on schedule
    for rec, service in zip(records, (0.2, 0.0, 0.4), strict=True):
        assert rec["enqueued"] <= rec["started"] <= rec["finished"]
        assert rec["finished"] - rec["started"] == pytest.approx(service, abs=0.15)
        assert rec["started"] - rec["enqueued"] < 5
        assert rec["host"]
    # Without --record-timings nothing is recorded (the demo's usual runs keep no per-task list).
    _produce(redis_url, "--queue", "video", "--count", "2", "--seconds", "0", env_extra={"KEY_PREFIX": "t:"})
    wait_until(lambda: int(r.get(keys.completions("video", "t:")) or 0) == 5, 20, "five completions")
    assert r.llen(keys.timings("video", "t:")) == 3
