"""Queue depth from kombu's Redis transport, read at scrape time.

kombu (kombu/transport/redis.py) keeps, for a queue ``q``: waiting messages in the list ``q`` (priority
step 0) and ``q<sep>n`` for step n > 0; every message delivered to a consumer and not acked yet in the single
hash ``unacked`` (value: JSON ``[message, exchange, routing_key]``); bindings in the sets
``_kombu.binding.<exchange>`` (members ``routing_key<sep>pattern<sep>queue``). The layout's names come from
kombu itself, so a kombu that changed them would be seen by the tests rather than read wrongly in silence.

With the transport option ``global_keyprefix`` kombu prepends the prefix to every one of these keys (not to
the members, the hash's values, nor the queue names inside them), so several installations share a database.
kombu's own prefixing client covers only the commands kombu sends (not SCAN nor HVALS): the keys are
prefixed here instead.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

import redis
from kombu.transport.redis import Channel

from .reading import BrokerError, BrokerReading, is_celery_internal

# Every step any ``priority_steps`` setting can produce (kombu allows 0..9), so no configuration hides a list.
PRIORITY_STEPS = range(1, 10)


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def list_keys(queue: str, prefix: str) -> list[str]:
    return [prefix + queue] + [f"{prefix}{queue}{Channel.sep}{n}" for n in PRIORITY_STEPS]


def binding_key(exchange: str, prefix: str) -> str:
    return prefix + Channel.keyprefix_queue % exchange


def parse_binding(member: bytes | str) -> tuple[str, str]:
    """A member of ``_kombu.binding.<exchange>`` -> (routing_key, queue); ("", "") when malformed."""
    parts = _text(member).split(Channel.sep)
    return (parts[0], parts[-1]) if len(parts) >= 3 else ("", "")


class RedisBroker:
    kind = "redis"

    def __init__(self, url: str, key_prefix: str = "") -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=2)
        self.prefix = key_prefix
        kw = self.client.connection_pool.connection_kwargs
        self.where = f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
        if key_prefix:
            self.where += f" (key prefix {key_prefix!r})"

    def discover(self) -> list[str]:
        try:
            found: set[str] = set()
            for key in self.client.scan_iter(match=binding_key("*", self.prefix), count=500):
                for member in self.client.smembers(key):
                    queue = parse_binding(member)[1]
                    if queue and not is_celery_internal(queue):
                        found.add(queue)
            return sorted(found)
        except (redis.RedisError, OSError) as e:
            raise BrokerError(f"redis broker {self.where}: listing bindings failed: {e}") from e

    def read(self, queues: list[str]) -> BrokerReading:
        try:
            # One MULTI/EXEC: every list length and the unacked hash from the same instant.
            pipe = self.client.pipeline(transaction=True)
            for q in queues:
                for key in list_keys(q, self.prefix):
                    pipe.llen(key)
            pipe.hvals(self.prefix + Channel.unacked_key)
            results = pipe.execute()
            steps = 1 + len(PRIORITY_STEPS)
            reading = BrokerReading()
            for i, q in enumerate(queues):
                reading.waiting[q] = sum(int(n) for n in results[i * steps : (i + 1) * steps])
            counts, reading.unattributed_prefetched = self._attribute(results[-1])
        except (redis.RedisError, OSError) as e:
            raise BrokerError(f"redis broker {self.where}: reading queues failed: {e}") from e
        reading.prefetched = {q: counts.get(q, 0) for q in queues}
        return reading

    def _attribute(self, values: Iterable[bytes]) -> tuple[Counter[str], int]:
        """Unacked messages per queue, found as kombu's own ``_lookup`` finds a message's queue: the bindings
        of its exchange whose routing key matches; with no exchange (the default one) the routing key is the
        queue."""
        entries: list[tuple[str, str]] = []
        for raw in values:
            try:
                _message, exchange, routing_key = json.loads(raw)
                entries.append((str(exchange or ""), str(routing_key or "")))
            except (ValueError, TypeError):
                entries.append(("", ""))
        exchanges = sorted({ex for ex, _ in entries if ex})
        bindings: dict[str, list[tuple[str, str]]] = {}
        if exchanges:
            pipe = self.client.pipeline(transaction=False)
            for ex in exchanges:
                pipe.smembers(binding_key(ex, self.prefix))
            for ex, members in zip(exchanges, pipe.execute(), strict=True):
                bindings[ex] = [parse_binding(m) for m in members]
        counts: Counter[str] = Counter()
        unattributed = 0
        for ex, rk in entries:
            targets = {q for brk, q in bindings.get(ex, []) if brk == rk and q} if ex else set()
            if not targets and rk:
                targets = {rk}
            if not targets:
                unattributed += 1
            for q in targets:
                counts[q] += 1
        return counts, unattributed
