"""What one read of a broker gives, whichever the broker: the shape every broker module returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


class BrokerError(Exception):
    """The broker could not be read; the message names the broker and what failed."""


@dataclass
class BrokerReading:
    """Per queue: messages waiting, and messages delivered to a consumer and not acked yet (prefetched).

    A queue the broker does not know is absent from both maps (missing, never zero)."""

    waiting: dict[str, int] = field(default_factory=dict)
    prefetched: dict[str, int] = field(default_factory=dict)
    # Delivered, not acked, and no queue could be found for it (Redis: exchange/routing key unbound).
    unattributed_prefetched: int = 0


class Broker(Protocol):
    kind: str

    def discover(self) -> list[str]:
        """The application queues the broker knows (Celery's own event and control queues left out)."""
        ...

    def read(self, queues: list[str]) -> BrokerReading: ...


def is_celery_internal(queue: str) -> bool:
    """Queues Celery itself declares for events (celeryev.<uuid>) and remote control (<host>.celery.pidbox,
    <uuid>.reply.celery.pidbox): never an application's work queue."""
    return queue.startswith("celeryev.") or queue.endswith(".celery.pidbox")
