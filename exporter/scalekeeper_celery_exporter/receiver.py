"""Three threads that feed EventState from the broker: one consumes Celery's events, one asks each newly heard
worker (remote control ``active_queues`` and ``conf``) which queues it consumes and whether it acks late, and
one sends the exporter a probe event now and then and drops the event connection when none comes back.

Why the probe: a broker that vanishes without closing its TCP connections (a deleted pod, a failover) leaves
the event consumer on a half-open connection that never errors; kombu checks a Redis pub/sub connection's
health only from its event loop, not from ``drain_events``, which Celery's receiver uses. An application
with no worker running sends no event at all, so silence alone cannot tell a dead connection from an idle
app: the exporter's own probe, sent on a fresh connection each time, can."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from celery import Celery
from celery.events.receiver import EventReceiver

from .events import EventState, WorkerInfo

log = logging.getLogger("scalekeeper_celery_exporter.receiver")

RECONNECT_SECONDS = 1.0
INSPECT_TIMEOUT_SECONDS = 1.0
INSPECT_EVERY_SECONDS = 0.5
PROBE_EVENT = "scalekeeper-exporter-probe"  # Celery's State ignores an event type outside task-/worker-
PROBE_EVERY_SECONDS = 2.0
PROBE_TIMEOUT_SECONDS = 10.0  # no probe back for this long, while listening: the connection is dead


class _Receiver(EventReceiver):  # type: ignore[misc]  # celery ships no type information
    """Celery's receiver, telling the state when its connection ends. It does not say when listening begins:
    consume-ready comes before kombu's Redis transport subscribes (on its first poll), so events sent in
    between are lost. The exporter's own probe heard back says it (EventListener._heard)."""

    def __init__(self, state: EventState, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.state = state

    def on_consume_end(self, connection: Any, channel: Any) -> None:
        self.state.deaf()


class EventListener:
    def __init__(self, app: Celery, state: EventState) -> None:
        self.app = app
        self.state = state
        self.errors = 0
        self._stop = threading.Event()
        self._receiver: _Receiver | None = None
        self._unanswered: set[str] = set()
        self._probe_heard = time.monotonic()
        self._probe_source = f"scalekeeper-exporter@{socket.gethostname()}.{os.getpid()}"
        self._threads = [
            threading.Thread(target=self._listen, name="celery-events", daemon=True),
            threading.Thread(target=self._inspect, name="celery-inspect", daemon=True),
            threading.Thread(target=self._probe, name="celery-probe", daemon=True),
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        if self._receiver is not None:
            self._receiver.should_stop = True
        for t in self._threads:
            t.join(5)

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                with self.app.connection_for_read() as conn:
                    self._probe_heard = time.monotonic()
                    self._receiver = _Receiver(
                        self.state,
                        conn,
                        handlers={"*": self.state.handle, PROBE_EVENT: self._heard},
                        app=self.app,
                    )
                    if self._stop.is_set():
                        return
                    # wakeup: every worker sends a heartbeat at once: executing counts come within a second.
                    self._receiver.capture(limit=None, timeout=None, wakeup=True)
            except Exception as e:  # any broker failure: count it, stay deaf, reconnect
                self.errors += 1
                self.state.deaf()
                log.warning("celery events: connection lost, reconnecting", extra={"error": str(e)})
                self._stop.wait(RECONNECT_SECONDS)

    def _heard(self, event: dict[str, Any]) -> None:
        if event.get("hostname") == self._probe_source:  # another exporter's probes say nothing of ours
            self._probe_heard = time.monotonic()
            self.state.listening()

    def _probe(self) -> None:
        while not self._stop.wait(PROBE_EVERY_SECONDS):
            receiver = self._receiver
            silent = time.monotonic() - self._probe_heard
            if receiver is not None and not receiver.should_stop and silent > PROBE_TIMEOUT_SECONDS:
                # The consumer polls with a 1 s timeout and leaves its loop on should_stop; _listen then
                # connects again.
                self.errors += 1
                self.state.deaf()
                log.warning(
                    "celery events: no probe came back, reconnecting", extra={"silent_seconds": silent}
                )
                receiver.should_stop = True
            try:
                with self.app.connection_for_write() as conn:
                    conn.ensure_connection(max_retries=1)
                    self.app.events.Dispatcher(conn, hostname=self._probe_source).send(PROBE_EVENT)
            except Exception as e:  # the broker is away: broker_up says so; the next probe tries again
                log.debug("celery events: probe not sent", extra={"error": str(e)})

    def _inspect(self) -> None:
        while not self._stop.wait(INSPECT_EVERY_SECONDS):
            asking = self.state.workers_without_info()
            self._unanswered.intersection_update(asking)  # gone or answered: said again if asked anew
            for hostname in asking:
                try:
                    info = self._ask(hostname)
                except Exception as e:  # a worker that does not answer is asked again next round
                    self.errors += 1
                    log.warning("celery inspect failed", extra={"worker": hostname, "error": str(e)})
                    continue
                if info is None:
                    if hostname not in self._unanswered:  # asked every round: said once
                        self._unanswered.add(hostname)
                        log.warning("celery inspect: no reply, asking again", extra={"worker": hostname})
                    continue
                self.state.set_worker_info(hostname, info)
                log.info(
                    "worker queues known",
                    extra={"worker": hostname, "queues": sorted(info.queues), "acks_late": info.acks_late},
                )

    def _ask(self, hostname: str) -> WorkerInfo | None:
        inspect = self.app.control.inspect(destination=[hostname], timeout=INSPECT_TIMEOUT_SECONDS)
        queues = (inspect.active_queues() or {}).get(hostname)
        conf = (inspect.conf(with_defaults=False) or {}).get(hostname)
        if queues is None or conf is None:
            return None
        return WorkerInfo(
            queues=frozenset(str(q["name"]) for q in queues if isinstance(q, dict) and "name" in q),
            acks_late=bool(conf.get("task_acks_late", False)),
        )
