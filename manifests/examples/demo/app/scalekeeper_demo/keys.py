"""Every Redis key the demo touches, in one place.

kombu's Redis transport (kombu/transport/redis.py, kombu 5.7.0) stores, for a queue ``q``:
  * waiting messages in lists: priority step 0 in the key ``q`` itself, step n > 0 in ``q\\x06\\x16n``
    (``Channel.sep = '\\x06\\x16'``). ``_q_for_pri`` maps a priority to a step of ``priority_steps``:
    by default [0, 3, 6, 9], configurable up to every value 0..9. The exporter counts the bare key and
    the keys for 1..9, so it counts every step any ``priority_steps`` setting can produce.
  * messages delivered to a consumer and not yet acked in the hash ``unacked`` (field: delivery tag,
    value: JSON ``[message, exchange, routing_key]``) with the sorted set ``unacked_index`` (delivery
    tag -> delivery time), which ``restore_visible`` scans for messages older than ``visibility_timeout``.
  * bindings in sets ``_kombu.binding.<exchange>``, members ``routing_key\\x06\\x16pattern\\x06\\x16queue``.
With the transport option ``global_keyprefix`` every one of these keys is prefixed (members and fields
are not).
"""

from __future__ import annotations

KOMBU_SEP = "\x06\x16"
PRIORITY_LEVELS = tuple(range(10))
UNACKED = "unacked"
UNACKED_INDEX = "unacked_index"
BINDING = "_kombu.binding.%s"


def queue_list_keys(queue: str, prefix: str = "") -> list[str]:
    """Every list kombu may keep waiting messages of ``queue`` in: the bare name (priority step 0) and
    1..9."""
    return [prefix + queue] + [f"{prefix}{queue}{KOMBU_SEP}{n}" for n in PRIORITY_LEVELS if n]


def unacked(prefix: str = "") -> str:
    return prefix + UNACKED


def unacked_index(prefix: str = "") -> str:
    return prefix + UNACKED_INDEX


def binding(exchange: str, prefix: str = "") -> str:
    return prefix + BINDING % exchange


# The demo's bookkeeping. The producer writes the first two, the task the rest.
def published(queue: str, prefix: str = "") -> str:
    """Set of task ids published to the queue."""
    return f"{prefix}demo:published:{queue}"


def publishes(queue: str, prefix: str = "") -> str:
    """Counter of publishes (celery_queue_published_total)."""
    return f"{prefix}demo:publishes:{queue}"


def started(queue: str, prefix: str = "") -> str:
    """Counter of executions started."""
    return f"{prefix}demo:started:{queue}"


def completed(queue: str, prefix: str = "") -> str:
    """Set of distinct task ids completed."""
    return f"{prefix}demo:completed:{queue}"


def completions(queue: str, prefix: str = "") -> str:
    """Counter of executions completed (celery_queue_completed_total). More than SCARD completed = ran
    twice."""
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
