"""Fixtures for the Celery exporter's tests: a real redis-server and a real rabbitmq-server (Debian's package,
installed with apt-get when missing) on loopback ports, one of each per session, and real subprocesses (the
exporter, Celery workers). Nothing is mocked and nothing is skipped."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# The demo's fixtures, one copy: a session redis-server, a test's emptied database, its subprocesses.
from tests.demo.conftest import (
    Procs,
    Samples,
    _tail,
    ensure_debian_binary,
    free_port,
    http_get,
    procs,
    redis_server,
    redis_url,
    scrape,
    wait_until,
)

HERE = Path(__file__).resolve().parent
EXPORTER_DIR = HERE.parents[1] / "exporter"
# Debian's package puts the server script here; /usr/sbin/rabbitmq-server would switch to the rabbitmq user.
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
APP = "shop"

__all__ = ["Procs", "Samples", "procs", "redis_server", "redis_url", "scrape", "wait_until"]


class RabbitMQServer:
    """One rabbitmq-server node in the foreground on 127.0.0.1, all its state in a tmp dir, the management
    plugin on, statistics every second (the exporter reads its counts from them)."""

    def __init__(self, workdir: Path) -> None:
        ensure_debian_binary(RABBITMQ_SERVER, "rabbitmq-server")
        self.workdir = workdir
        self.port, self.management_port, self.dist_port, self.epmd_port = (free_port() for _ in range(4))
        self.log = workdir / "rabbitmq.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.auth = "Basic " + base64.b64encode(b"guest:guest").decode()

    def _env(self) -> dict[str, str]:
        home = self.workdir / "home"
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(uuid.uuid4().hex)
            cookie.chmod(0o400)
        (self.workdir / "enabled_plugins").write_text("[rabbitmq_management].\n")
        (self.workdir / "rabbitmq.conf").write_text(
            f"listeners.tcp.1 = 127.0.0.1:{self.port}\n"
            f"management.tcp.port = {self.management_port}\n"
            "management.tcp.ip = 127.0.0.1\n"
            "collect_statistics_interval = 1000\n"
            # Counts aggregated at the smallest sample interval: 1 s, not 5 s (as hack/addons/rabbitmq.yaml).
            "management.sample_retention_policies.global.minute = 1\n"
            "management.sample_retention_policies.basic.minute = 1\n"
            "management.sample_retention_policies.detailed.10 = 1\n"
        )
        return dict(
            os.environ,
            HOME=str(home),
            RABBITMQ_NODENAME=f"exporter-tests-{uuid.uuid4().hex[:8]}@localhost",
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            ERL_EPMD_PORT=str(self.epmd_port),
            RABBITMQ_MNESIA_BASE=str(self.workdir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.workdir / "log"),
            RABBITMQ_LOGS="-",
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.workdir / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(self.workdir / "rabbitmq"),
        )

    def api(self, method: str, path: str, body: object = None) -> tuple[int, bytes]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.management_port}/api/{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": self.auth, "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def start(self) -> RabbitMQServer:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [RABBITMQ_SERVER],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"rabbitmq-server exited with {self.proc.returncode}:\n{_tail(self.log)}")
            with contextlib.suppress(OSError):
                if self.api("GET", "overview")[0] == 200:
                    return self
            time.sleep(0.2)
        pytest.fail(f"rabbitmq-server's management API did not answer in 60 s:\n{_tail(self.log)}")

    def vhost(self) -> str:
        """A new, empty virtual host the guest user may use: one test's own broker."""
        name = f"t-{uuid.uuid4().hex[:8]}"
        assert self.api("PUT", f"vhosts/{name}")[0] in (201, 204)
        permissions = {"configure": ".*", "write": ".*", "read": ".*"}
        assert self.api("PUT", f"permissions/{name}/guest", permissions)[0] in (201, 204)
        return f"amqp://guest:guest@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # A throwaway node (its state is in a tmp dir): killed, not shut down, which would take 6 s.
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

        # The node started an epmd of its own on its own port; it outlives the node unless told to stop, and
        # refuses while it still lists the node (until it sees the node's connection close).
        def epmd_killed() -> bool:
            r = subprocess.run(
                ["epmd", "-port", str(self.epmd_port), "-kill"], capture_output=True, check=False
            )
            return r.returncode == 0 or b"Killed" in r.stdout or b"Cannot connect" in r.stderr + r.stdout

        wait_until(epmd_killed, 10, f"the epmd on port {self.epmd_port} to stop")


@pytest.fixture(scope="session")
def rabbitmq(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitMQServer]:
    server = RabbitMQServer(tmp_path_factory.mktemp("rabbitmq")).start()
    yield server
    server.stop()


@pytest.fixture
def amqp_url(rabbitmq: RabbitMQServer) -> str:
    return rabbitmq.vhost()


def process_env(broker_url: str, **extra: str) -> dict[str, str]:
    """The environment of a process the tests start against `broker_url`: none of the exporter's settings
    inherited from the caller's shell, the exporter's source and the tests' apps importable."""
    env = dict(os.environ, BROKER_URL=broker_url, PYTHONUNBUFFERED="1")
    env.pop("QUEUES", None)
    env.pop("APP", None)
    env.pop("REDIS_KEY_PREFIX", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), str(EXPORTER_DIR), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


def start_exporter(procs: Procs, broker_url: str, *args: str, name: str = "exporter") -> int:
    port = free_port()
    argv = [sys.executable, "-m", "scalekeeper_celery_exporter", "--app", APP, "--port", str(port)]
    procs.start(name, [*argv, "--addr", "127.0.0.1", "--log-level", "DEBUG", *args], process_env(broker_url))
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/metrics")[0] == 200, 20, f"{name} to serve")
    # Events sent before its event queue is bound never reach it: tests publish only once it listens.
    wait_until(
        lambda: value(scrape(port), "scalekeeper_exporter_events_connected") == 1,
        20,
        f"{name} to hear events",
    )
    return port


def start_worker(
    procs: Procs,
    pod: str,
    broker_url: str,
    queue: str,
    concurrency: int,
    acks_late: bool,
    key_prefix: str = "",
) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "celery_tasks",
        "worker",
        "-Q",
        queue,
        "--concurrency",
        str(concurrency),
        "--prefetch-multiplier",
        "1",
        "--pool",
        "prefork",
        "--without-gossip",
        "--without-mingle",
        "--hostname",
        f"celery@{pod}",
        "--loglevel",
        "INFO",
    ]
    env = process_env(broker_url, ACKS_LATE="1" if acks_late else "0", KEY_PREFIX=key_prefix)
    p = procs.start(pod, args, env)
    procs.wait_log(pod, " ready.", 40)
    return p


def value(samples: Samples, name: str, **labels: str) -> float | None:
    """The one sample of `name` whose labels include `labels` (None when there is none)."""
    found = [v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls)]
    assert len(found) <= 1, f"{name}{labels} matches {len(found)} samples"
    return found[0] if found else None
