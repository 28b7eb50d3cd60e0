"""scalekeeper-celery-exporter: serves Prometheus series of one broker's Celery queues.

The broker URL is read from an environment variable (as a Kubernetes Secret provides it), never from the
command line, where any process listing would show its password.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
import urllib.parse
from typing import NoReturn

from celery import Celery
from prometheus_client import CollectorRegistry, start_http_server

from . import __version__, logs
from .collector import QueueCollector
from .events import EventState
from .rabbitmq_broker import RabbitMQBroker
from .reading import Broker
from .receiver import EventListener
from .redis_broker import RedisBroker

log = logging.getLogger("scalekeeper_celery_exporter")

REDIS_SCHEMES = ("redis", "rediss")
AMQP_SCHEMES = ("amqp", "amqps", "pyamqp")


class Parser(argparse.ArgumentParser):
    """Bad input is answered with one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{port} is not between 1 and 65535")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0 seconds")
    return value


# Glob characters: kombu subscribes to its prefixed event and control channels by pattern (PSUBSCRIBE), so
# with ``ns[12]:`` it would also hear ``ns1:``'s, and a SCAN for the bindings would match theirs too.
GLOB_CHARACTERS = "*?[]\\"


def _key_prefix(text: str) -> str:
    if found := sorted({c for c in text if c in GLOB_CHARACTERS}):
        raise argparse.ArgumentTypeError(
            f"{text!r} has the glob character(s) {' '.join(found)}: kombu subscribes to the prefixed "
            "channels by pattern, so it would also match other installations' events"
        )
    return text


def _queues(text: str) -> list[str]:
    queues = [q.strip() for q in text.split(",") if q.strip()]
    if not queues:
        raise argparse.ArgumentTypeError(f"{text!r} names no queue")
    return queues


def parser() -> Parser:
    p = Parser(prog="scalekeeper-celery-exporter", description=__doc__.split("\n")[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument("--app", default=os.environ.get("APP"), help="value of the app label (env APP); required")
    p.add_argument(
        "--broker-url-env", default="BROKER_URL", metavar="NAME", help="variable holding the broker URL"
    )
    p.add_argument("--broker-name", help="value of the broker label (default: the URL without credentials)")
    p.add_argument(
        "--queues",
        type=_queues,
        help="comma-separated queues (env QUEUES); default: every queue the broker knows, at each scrape",
    )
    p.add_argument(
        "--rate-window",
        type=_seconds,
        default=60.0,
        metavar="SECONDS",
        help="event counters stay missing this long after start or reconnection (default 60)",
    )
    p.add_argument(
        "--rabbitmq-management-url",
        default=os.environ.get("RABBITMQ_MANAGEMENT_URL"),
        help="default: http://<broker host>:15672 (credentials from the broker URL)",
    )
    p.add_argument(
        "--redis-key-prefix",
        type=_key_prefix,
        metavar="PREFIX",
        help="the applications' kombu global_keyprefix transport option (env REDIS_KEY_PREFIX); Redis only",
    )
    p.add_argument("--port", type=_port, default=9808)
    p.add_argument("--addr", default="0.0.0.0")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="INFO")
    return p


def broker_label(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def make_broker(url: str, management_url: str | None, redis_key_prefix: str) -> Broker:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in REDIS_SCHEMES:
        return RedisBroker(url, redis_key_prefix)
    return RabbitMQBroker(url, management_url)


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    queues = args.queues
    if queues is None and os.environ.get("QUEUES"):
        try:
            queues = _queues(os.environ["QUEUES"])
        except argparse.ArgumentTypeError as e:
            p.error(f"QUEUES: {e}")
    key_prefix = args.redis_key_prefix
    if key_prefix is None:
        try:
            key_prefix = _key_prefix(os.environ.get("REDIS_KEY_PREFIX", ""))
        except argparse.ArgumentTypeError as e:
            p.error(f"REDIS_KEY_PREFIX: {e}")
    if not args.app:
        p.error("--app (or APP) is required: the app label keeps two apps' same-named queues apart")
    url = os.environ.get(args.broker_url_env, "")
    if not url:
        p.error(f"{args.broker_url_env} is not set: it must hold the broker URL")
    try:
        scheme = urllib.parse.urlsplit(url).scheme
        label = args.broker_name or broker_label(url)  # reads the port: a malformed one raises here
    except ValueError as e:
        p.error(f"{args.broker_url_env}: not a URL ({e})")
    if scheme not in REDIS_SCHEMES + AMQP_SCHEMES:
        p.error(
            f"{args.broker_url_env}: scheme {scheme!r} is not one of "
            f"{', '.join(REDIS_SCHEMES + AMQP_SCHEMES)}"
        )
    if key_prefix and scheme not in REDIS_SCHEMES:
        p.error(
            f"--redis-key-prefix (or REDIS_KEY_PREFIX) is kombu's Redis transport option; "
            f"{args.broker_url_env} is not a Redis URL (scheme {scheme!r})"
        )

    logs.configure(args.log_level)
    broker = make_broker(url, args.rabbitmq_management_url, key_prefix)
    app = Celery("scalekeeper-celery-exporter", broker=url, set_as_current=False)
    if scheme in REDIS_SCHEMES:
        # Without a socket timeout a command on a connection whose broker vanished (a deleted pod leaves it
        # half-open) waits forever: the receiver's probe and inspections must fail instead, and try anew.
        options: dict[str, object] = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
        if key_prefix:
            # kombu prefixes the event and remote-control pub/sub channels too: unprefixed, none is heard.
            options["global_keyprefix"] = key_prefix
        app.conf.broker_transport_options = options
    state = EventState(args.rate_window)
    listener = EventListener(app, state)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(QueueCollector(broker, state, args.app, label, queues, lambda: listener.errors))
    listener.start()
    server, _thread = start_http_server(args.port, addr=args.addr, registry=registry)
    log.info(
        "serving",
        extra={
            "app": args.app,
            "broker": label,
            "queues": queues or "discovered",
            "redis_key_prefix": key_prefix or None,
            "addr": args.addr,
            "port": args.port,
            "rate_window": args.rate_window,
        },
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    listener.stop()
    log.info("stopped")
    return 0
