"""Queue depth from RabbitMQ's management HTTP API, read at scrape time.

Per queue, ``messages_ready`` is waiting and ``messages_unacknowledged`` is delivered to a consumer and not
acked yet (prefetched). A passive queue declare over AMQP would need no plugin but gives only the ready count,
not the unacked one, so the management API is used. RabbitMQ refreshes these counts every
``collect_statistics_interval`` and aggregates them at its smallest sample interval (both 5 s by default; at
1 s each a publish shows within about 2 s: exporter/README.md).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from .reading import BrokerError, BrokerReading, is_celery_internal

MANAGEMENT_PORT = 15672


def management_base(broker_url: str, override: str | None) -> str:
    """The management API's base URL: the override, else the broker's host on the management port."""
    if override:
        return override.rstrip("/")
    host = urllib.parse.urlsplit(broker_url).hostname or "localhost"
    return f"http://{host}:{MANAGEMENT_PORT}"


def vhost_of(broker_url: str) -> str:
    """kombu's reading of an amqp URL's virtual host: the path after the first '/', '/' when empty."""
    return urllib.parse.unquote(urllib.parse.urlsplit(broker_url).path[1:]) or "/"


class RabbitMQBroker:
    kind = "rabbitmq"

    def __init__(self, broker_url: str, management_url: str | None = None, timeout: float = 3.0) -> None:
        parts = urllib.parse.urlsplit(broker_url)
        user = urllib.parse.unquote(parts.username or "guest")
        password = urllib.parse.unquote(parts.password or "guest")
        self.auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.base = management_base(broker_url, management_url)
        self.vhost = vhost_of(broker_url)
        self.timeout = timeout

    def _queues(self) -> list[dict[str, Any]]:
        url = (
            f"{self.base}/api/queues/{urllib.parse.quote(self.vhost, safe='')}"
            "?columns=name,messages_ready,messages_unacknowledged"
        )
        request = urllib.request.Request(url, headers={"Authorization": self.auth})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = json.load(response)
        except urllib.error.HTTPError as e:
            raise BrokerError(f"rabbitmq management API {url}: HTTP {e.code} {e.reason}") from e
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise BrokerError(f"rabbitmq management API {url}: {e}") from e
        if not isinstance(body, list):
            raise BrokerError(
                f"rabbitmq management API {url}: expected a list of queues, got {type(body).__name__}"
            )
        return [q for q in body if isinstance(q, dict) and isinstance(q.get("name"), str)]

    def discover(self) -> list[str]:
        return sorted(q["name"] for q in self._queues() if not is_celery_internal(q["name"]))

    def read(self, queues: list[str]) -> BrokerReading:
        wanted = set(queues)
        reading = BrokerReading()
        for q in self._queues():
            name = q["name"]
            if name not in wanted:
                continue
            # A queue declared since RabbitMQ's last statistics round has no counts yet: left missing.
            ready, unacked = q.get("messages_ready"), q.get("messages_unacknowledged")
            if isinstance(ready, int):
                reading.waiting[name] = ready
            if isinstance(unacked, int):
                reading.prefetched[name] = unacked
        return reading
