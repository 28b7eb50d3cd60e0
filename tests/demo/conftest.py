"""Fixtures for the demo application's tests: a real redis-server on a loopback port and real subprocesses
(Celery workers, the web app). Nothing is mocked and nothing is skipped: when redis-server is missing it is
installed with apt-get, and when it cannot be had or started the test fails saying why."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

ROOT = Path(__file__).resolve().parents[2]
DEMO_DIR = ROOT / "manifests" / "examples" / "demo"
APP_DIR = DEMO_DIR / "app"
if str(APP_DIR) not in sys.path:
    sys.path.insert(0, str(APP_DIR))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            v = cond()
            if v:
                return v
        except Exception as e:  # the condition may poll something still starting
            last_exc = e
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_exc})" if last_exc else "")
    )


def _tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def ensure_debian_binary(binary: str, package: str) -> str:
    """Path of a server binary (a name on PATH or an absolute path), installing Debian's package when it is
    missing. Fails (never skips) otherwise."""
    path = shutil.which(binary)
    if path:
        return path
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(f"{binary} is missing and cannot be installed here: install the Debian package {package}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=300, check=False)
    r = subprocess.run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    path = shutil.which(binary)
    if r.returncode != 0 or not path:
        pytest.fail(
            f"apt-get install {package} failed (exit {r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
        )
    return path


class RedisServer:
    """One redis-server process on 127.0.0.1, no persistence. stop()/start() keep the port."""

    def __init__(self, workdir: Path, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.binary = ensure_debian_binary("redis-server", "redis-server")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / f"redis-{self.port}.log"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def start(self) -> RedisServer:
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.workdir),
            *self.extra_args,
        ]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"redis-server exited with {self.proc.returncode} on port {self.port}:\n{_tail(self.log)}"
                )
            try:
                if self.client().ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        pytest.fail(f"redis-server on port {self.port} did not answer PING in 15 s:\n{_tail(self.log)}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server, emptied for this test."""
    redis_server.client().flushall()
    return redis_server.url(0)


@pytest.fixture
def extra_redis(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """Start more redis-servers of this test's own (stopped at its end)."""
    servers: list[RedisServer] = []

    def make(*extra_args: str) -> RedisServer:
        s = RedisServer(tmp_path / f"redis{len(servers)}", extra_args=extra_args).start()
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()


def demo_env(broker_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    for k in ("READ_REDIS_URL", "PRIMARY_REDIS_URL", "DEMO_REDIS_URL", "KEY_PREFIX", "QUEUES"):
        env.pop(k, None)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(APP_DIR), env.get("PYTHONPATH", "")])),
        BROKER_URL=broker_url,
        PYTHONUNBUFFERED="1",
        QUEUES="emails,video,reports",
    )
    env.update(extra)
    return env


class Procs:
    """Subprocesses of one test, each in its own session (so its Celery pool children go with it);
    whatever still runs at the end of the test is killed by its process-group id."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def log(self, name: str) -> Path:
        return self.tmp_path / f"{name}.log"

    def tail(self, name: str, n: int = 40) -> str:
        return f"--- {name}.log\n{_tail(self.log(name), n)}"

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with self.log(name).open("wb") as log:
            p = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.tmp_path, start_new_session=True
            )
        self.procs[name] = p
        return p

    def wait_log(self, name: str, needle: str, timeout: float) -> None:
        p = self.procs[name]

        def seen() -> bool:
            if p.poll() is not None:
                raise AssertionError(f"{name} exited with {p.returncode}\n{self.tail(name)}")
            return needle in self.log(name).read_text(errors="replace")

        try:
            wait_until(seen, timeout, f"{needle!r} in {name}'s log")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.tail(name)}") from None

    def worker(
        self, name: str, broker_url: str, queue: str, concurrency: int, prefetch: int, **env: str
    ) -> subprocess.Popen[bytes]:
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "scalekeeper_demo.celery_app",
            "worker",
            "-Q",
            queue,
            "--concurrency",
            str(concurrency),
            "--prefetch-multiplier",
            str(prefetch),
            "--pool",
            "prefork",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--hostname",
            f"{name}@%h",
            "--loglevel",
            "INFO",
        ]
        p = self.start(name, args, demo_env(broker_url, **env))
        self.wait_log(name, " ready.", 40)
        return p

    def cleanup(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    p = Procs(tmp_path)
    yield p
    p.cleanup()


def http_get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of one scrape: {(sample name, sorted labels): value}."""
    from prometheus_client.parser import text_string_to_metric_families

    code, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert code == 200, body
    out: Samples = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def q(samples: Samples, name: str, queue: str) -> float | None:
    return samples.get((name, (("queue", queue),)))
