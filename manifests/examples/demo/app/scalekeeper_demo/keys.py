"""Every Redis key the demo touches, in one place.

kombu's Redis transport (kombu/transport/redis.py, kombu 5.7.0) keeps, for a queue ``q``, the waiting messages
in lists: priority step 0 in the key ``q`` itself, step n > 0 in ``q\\x06\\x16n`` (``Channel.sep``); and the
messages delivered to a consumer and not yet acked in the one hash ``unacked``. The tests read these to see
where a task is; scalekeeper's exporter reads them for the metrics. With the transport option
``global_keyprefix`` every key is prefixed.

The demo's own bookkeeping keys below are the tests' and benchmarks' accounting of tasks lost or run twice;
nothing is sized from them.
"""

from __future__ import annotations

KOMBU_SEP = "\x06\x16"
PRIORITY_LEVELS = tuple(range(10))


def queue_list_keys(queue: str, prefix: str = "") -> list[str]:
    """Every list kombu may keep waiting messages of ``queue`` in: the bare name (priority step 0) and
    1..9."""
    return [prefix + queue] + [f"{prefix}{queue}{KOMBU_SEP}{n}" for n in PRIORITY_LEVELS if n]


def unacked(prefix: str = "") -> str:
    return prefix + "unacked"


# The demo's bookkeeping. The producer writes the first two, the task the rest.
def published(queue: str, prefix: str = "") -> str:
    """Set of task ids published to the queue."""
    return f"{prefix}demo:published:{queue}"


def publishes(queue: str, prefix: str = "") -> str:
    """Counter of publishes."""
    return f"{prefix}demo:publishes:{queue}"


def started(queue: str, prefix: str = "") -> str:
    """Counter of executions started."""
    return f"{prefix}demo:started:{queue}"


def completed(queue: str, prefix: str = "") -> str:
    """Set of distinct task ids completed."""
    return f"{prefix}demo:completed:{queue}"


def completions(queue: str, prefix: str = "") -> str:
    """Counter of executions completed. More than SCARD completed = ran twice."""
    return f"{prefix}demo:completions:{queue}"


def redelivered(queue: str, prefix: str = "") -> str:
    """Set of task ids that ran from a redelivered (restored) message."""
    return f"{prefix}demo:redelivered:{queue}"


def timings(queue: str, prefix: str = "") -> str:
    """List of JSON records, one per execution finished, of a task published with an enqueue time:
    {"id", "enqueued", "started", "finished" (wall-clock epoch seconds), "host"}; benches read per-task
    waits (started - enqueued) from it."""
    return f"{prefix}demo:timings:{queue}"


def item(n: int) -> str:
    """Items the web app reads from the read tier (no prefix: they live in the demo's own db-primary)."""
    return f"demo:item:{n}"
