"""Configuration from environment variables, read when asked (so tests and CLIs can override per process)."""

from __future__ import annotations

import os

DEFAULT_BROKER_URL = "redis://redis.scalekeeper-system.svc.cluster.local:6379/0"
DEFAULT_QUEUES = ("emails", "video", "reports")


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def broker_url() -> str:
    """The Celery broker (a Redis URL); by default also where the demo keeps its bookkeeping keys."""
    return os.environ.get("BROKER_URL", "").strip() or DEFAULT_BROKER_URL


def demo_redis_url() -> str:
    """Redis of the demo:* bookkeeping keys the exporter reads: the broker's, unless DEMO_REDIS_URL."""
    return os.environ.get("DEMO_REDIS_URL", "").strip() or broker_url()


def key_prefix() -> str:
    """Prefix of every key in the broker's Redis: kombu's ``global_keyprefix`` and the demo:* keys alike.

    Lets several demo installations (one per test namespace) share one Redis database without seeing each
    other's queues. Empty by default.
    """
    return os.environ.get("KEY_PREFIX", "")


def queues() -> list[str]:
    raw = os.environ.get("QUEUES", "").strip()
    names = [q.strip() for q in raw.split(",") if q.strip()] if raw else list(DEFAULT_QUEUES)
    if not names:
        raise ValueError("QUEUES names no queue")
    return names


def visibility_timeout() -> int:
    """Seconds a delivered-but-unacked message stays invisible before another worker restores it.

    Must exceed the longest time from delivery to ack: (prefetch multiplier + 1) x MAX_TASK_SECONDS.
    """
    return _int("VISIBILITY_TIMEOUT", 300)


def max_task_seconds() -> float:
    """Upper bound of one task's run time: the task clamps its ``seconds`` argument to it, so a worker pod's
    terminationGracePeriodSeconds larger than this always lets warm shutdown finish the running tasks."""
    return _float("MAX_TASK_SECONDS", 30.0)


def task_mode() -> str:
    """``sleep`` (default) or ``burn`` (busy CPU loop) for the task's ``seconds``."""
    mode = os.environ.get("TASK_MODE", "sleep").strip() or "sleep"
    if mode not in ("sleep", "burn"):
        raise ValueError(f"TASK_MODE must be sleep or burn, not {mode!r}")
    return mode


def read_redis_url() -> str | None:
    """The read tier (the db-replica Service). Unset: the web app only counts its simulated reads."""
    return os.environ.get("READ_REDIS_URL", "").strip() or None


def primary_redis_url() -> str | None:
    """The db-primary Redis. When set, the web app seeds the items it reads (replicated to db-replica)."""
    return os.environ.get("PRIMARY_REDIS_URL", "").strip() or None


def work_ms() -> float:
    """Milliseconds of CPU work per request to ``/``."""
    return _float("WORK_MS", 20.0)


def read_items() -> int:
    """How many distinct items (keys demo:item:<n>) the web app reads from and seeds."""
    return _int("READ_ITEMS", 100)
