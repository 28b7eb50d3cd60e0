"""Writing a policy's status: only when it changed, so an idle policy costs no API writes."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException

from . import model
from .memory import PolicyMemory
from .opmetrics import OperatorMetrics
from .policy import PolicyObject

log = logging.getLogger("scalekeeper.publish")

# Answers that say "not now" rather than "no": throttled by priority and fairness, or a server restarting.
_TRANSIENT = frozenset({429, 500, 502, 503, 504})


class StatusPublisher:
    """Writes a policy's status when it changed, and keeps what was written so an idle policy writes
    nothing. A write the API server turns away for now (throttled, restarting) is retried next cycle."""

    def __init__(self, metrics: OperatorMetrics, clock: Callable[[], float], refresh_seconds: float) -> None:
        self._metrics = metrics
        self._clock = clock
        self._status_refresh = refresh_seconds

    def publish(
        self,
        policy: PolicyObject,
        status: model.ScalingPolicyStatus,
        memory: PolicyMemory,
        write_status: Callable[[dict[str, Any]], None],
    ) -> bool:
        body = status.to_patch()
        now = self._clock()
        written = (_fingerprint(body), _fingerprint(_signature(body)))
        if written == memory.last_status:
            return False
        # Metric values and reason texts move every cycle; they alone refresh the status at most once a
        # `status_refresh_seconds`, so an idle policy costs no API writes.
        if (
            memory.last_status is not None
            and written[1] == memory.last_status[1]
            and now - memory.last_status_write < self._status_refresh
        ):
            return False
        try:
            write_status(body)
        except ApiException as exc:
            if exc.status == 404:
                # Deleted while its cycle ran (the scheduler forgets it at the watch event): nothing
                # is left to report on, and nothing failed.
                self._metrics.write("status", "gone")
                log.info(
                    "policy deleted during its cycle", extra={"policy": f"{policy.namespace}/{policy.name}"}
                )
                return False
            if exc.status == 409:
                # Written at a resourceVersion the policy no longer has: edited since, or handed over to
                # another replica (see runtime.Runtime.cycle). Not an error: the next cycle, if this
                # replica still serves it, writes from the newer version.
                self._metrics.write("status", "conflict")
                log.info(
                    "status write refused as stale", extra={"policy": f"{policy.namespace}/{policy.name}"}
                )
                return False
            if exc.status not in _TRANSIENT:
                self._metrics.write("status", "error")
                raise
            # Throttled (priority and fairness) or briefly unavailable: the same status goes out on the
            # next cycle, since nothing below records it as written. A line, not a traceback.
            self._metrics.write("status", "deferred")
            log.warning(
                "status write deferred to the next cycle (%s %s)",
                exc.status,
                exc.reason,
                extra={"policy": f"{policy.namespace}/{policy.name}"},
            )
            return False
        self._metrics.write("status", "ok")
        memory.last_status = written
        memory.last_status_write = now
        return True


def _fingerprint(value: Any) -> bytes:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _signature(body: dict[str, Any]) -> Any:
    """The status without what changes every cycle (metric values, reason texts, condition messages)."""
    targets = [
        {k: v for k, v in t.items() if k not in ("metrics", "reason")} for t in body.get("targets", [])
    ]
    conditions = [{k: v for k, v in c.items() if k != "message"} for c in body.get("conditions", [])]
    return (
        targets,
        conditions,
        body.get("web"),
        body.get("workers"),
        body.get("readReplicas"),
        body.get("observedGeneration"),
        body.get("bottleneck"),
    )
