"""A broker that vanishes without closing its connections (a deleted pod: its TCP peers are never told) must
not leave the exporter deaf for good. A TCP relay stands between the exporter and a real Redis; "vanishing"
stops relaying on every open connection, keeping each open and silent (half-open), while new connections are
relayed again, as a new broker pod behind the same Service would take them."""

from __future__ import annotations

import socket
import threading

from tests.demo.conftest import RedisServer

from .celery_tasks import make_app
from .conftest import Procs, scrape, start_exporter, value, wait_until


class Relay:
    """127.0.0.1:<port> -> the broker. `vanish()` silences every connection open now, forever."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._lock = threading.Lock()
        self._generation = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def vanish(self) -> None:
        with self._lock:
            self._generation += 1

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                generation = self._generation
                self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b, generation), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, generation: int) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                return
            with self._lock:
                alive = generation == self._generation
            if not data or not alive:
                return  # silent from now on: nothing relayed, nothing closed
            try:
                dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for s in self._open:
                s.close()


def test_events_come_back_after_the_broker_vanished_without_closing(
    redis_server: RedisServer, redis_url: str, procs: Procs
) -> None:
    relay = Relay(redis_server.port)
    try:
        url = f"redis://127.0.0.1:{relay.port}/0"
        port = start_exporter(procs, url, "--queues", "emails", "--rate-window", "1")
        app = make_app(url)
        app.tasks["tests.sleep"].apply_async((0,), queue="emails")
        # Heard through the event connection it holds: that one, subscribed, is the one to go half-open.
        wait_until(
            lambda: value(scrape(port), "celery_queue_published_total", queue="emails") == 1,
            20,
            "the first task to be counted",
        )
        relay.vanish()
        # Its event connection is half-open now: the probe it sends itself does not come back.
        errors = value(scrape(port), "scalekeeper_exporter_event_errors_total") or 0
        wait_until(
            lambda: (value(scrape(port), "scalekeeper_exporter_event_errors_total") or 0) > errors,
            30,
            "the exporter to find its event connection dead",
        )
        # Connected again, through a new connection, it hears the application's events. Tasks sent in the
        # moment between two connections are not heard (no event is), so one is sent every second until one
        # is. Another host name for the same relay: kombu's producer pools are global per URL, and the
        # test's first producer's connection is half-open too.
        producer = make_app(url.replace("127.0.0.1", "localhost"))

        def heard_again() -> bool:
            producer.tasks["tests.sleep"].apply_async((0,), queue="emails")
            return (value(scrape(port), "celery_queue_published_total", queue="emails") or 0) >= 2

        wait_until(heard_again, 30, "a task sent after the broker came back to be counted", interval=1.0)
    finally:
        relay.close()
