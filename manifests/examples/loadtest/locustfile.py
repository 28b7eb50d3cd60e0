"""The load test's users: the demo's web tier browsed, searched and bought from, at a known rate.

  locust -f locustfile.py --headless --host http://web

Settings (environment):
  LOAD_POINTS       the load, `t:rps` points (shape.py); default "0:6,60:60,240:60"
  RATE_PER_USER     requests per second one user sends, Poisson (default 0.5): users = ceil(rps / RATE_PER_USER)
  INTERVAL_SECONDS  width of a reported interval (default 10)
  BROWSE_MS, SEARCH_MS   CPU milliseconds asked of web by a browse (GET /?ms=) and a search (default 10, 30)
  PURCHASE_QUEUE    the demo queue a purchase publishes one task onto (GET /enqueue; default emails)
  REQUEST_TIMEOUT   seconds before a request counts as failed (default 10)

Every interval, one line `LOADTEST {json}` on stdout: the requests that completed in it (p50/p95/p99 in ms
over those requests only, failures and their first errors), the rate asked for at its middle, the users,
and this process's CPU (seconds used in the interval / its length: the load generator's own cost).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from typing import Any

import gevent
from locust import LoadTestShape, events, task
from locust.contrib.fasthttp import FastHttpUser

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shape import Interval, Pacer, interval_index, parse_points, rate_at, users_for  # noqa: E402

POINTS = parse_points(os.environ.get("LOAD_POINTS", "0:6,60:60,240:60"))
RATE_PER_USER = float(os.environ.get("RATE_PER_USER", "0.5"))
INTERVAL_SECONDS = float(os.environ.get("INTERVAL_SECONDS", "10"))
BROWSE_MS = float(os.environ.get("BROWSE_MS", "10"))
SEARCH_MS = float(os.environ.get("SEARCH_MS", "30"))
PURCHASE_QUEUE = os.environ.get("PURCHASE_QUEUE", "emails")
REQUEST_TIMEOUT = float(os.environ.get("REQUEST_TIMEOUT", "10"))
users_for(1.0, RATE_PER_USER)  # a bad RATE_PER_USER fails here, before any user starts


class Shopper(FastHttpUser):
    """FastHttpUser (geventhttpclient) rather than HttpUser (requests): several times less CPU per request,
    and locust shares two cores with the cluster it measures."""

    def on_start(self) -> None:
        self.pacer = Pacer(RATE_PER_USER, time.monotonic(), random.Random())
        # The first request waits for the user's first start time too (a random phase).
        gevent.sleep(self.pacer.wait(time.monotonic()))

    def wait_time(self) -> float:
        """Poisson arrivals at RATE_PER_USER (shape.Pacer); locust calls it after each task."""
        return self.pacer.wait(time.monotonic())
    network_timeout = REQUEST_TIMEOUT
    connection_timeout = REQUEST_TIMEOUT
    # One connection per request: kube-proxy balances connections, not requests, so kept-alive
    # connections would pin every user to the pods there were when it started, and new pods get none.
    default_headers = {"Connection": "close"}

    @task(6)
    def browse(self) -> None:
        self.client.get(f"/?ms={BROWSE_MS:g}", name="browse")

    @task(3)
    def search(self) -> None:
        self.client.get(f"/?ms={SEARCH_MS:g}", name="search")

    @task(1)
    def purchase(self) -> None:
        self.client.get(f"/enqueue?queue={PURCHASE_QUEUE}&n=1&seconds=0.1", name="purchase")


class Ramp(LoadTestShape):
    """The users that offer POINTS' rate at each moment; the run ends after the last point."""

    def tick(self) -> tuple[int, float] | None:
        rps = rate_at(POINTS, self.get_run_time())
        if rps is None:
            return None
        # 100 users a second (locust warns above that): the rate follows the points, not the default 1 user/s.
        return users_for(rps, RATE_PER_USER), 100.0


class Intervals:
    """Request events bucketed by completion time into INTERVAL_SECONDS intervals from the test's start,
    each printed once it has ended."""

    def __init__(self) -> None:
        self.t0 = 0.0
        self.epoch0 = 0.0
        self.open: dict[int, Interval] = {}
        self.cpu_at = 0.0
        self.environment: Any = None
        self.loop: Any = None

    def start(self, environment: Any) -> None:
        self.environment = environment
        self.t0, self.epoch0 = time.monotonic(), time.time()
        self.cpu_at = self._cpu()
        self.loop = gevent.spawn(self._loop)

    @staticmethod
    def _cpu() -> float:
        t = os.times()
        return t.user + t.system

    def _interval(self, index: int) -> Interval:
        if index not in self.open:
            self.open[index] = Interval(index, index * INTERVAL_SECONDS, INTERVAL_SECONDS)
        return self.open[index]

    def on_request(self, response_time: float, exception: Any) -> None:
        if not self.t0:
            return
        index = interval_index(time.monotonic() - self.t0, INTERVAL_SECONDS)
        error = None if exception is None else type(exception).__name__ + ": " + str(exception)[:80]
        self._interval(index).add(float(response_time), error)

    def emit(self, index: int, seconds: float) -> None:
        interval = self._interval(index)
        interval.seconds = seconds
        del self.open[index]
        cpu = self._cpu()
        used, self.cpu_at = cpu - self.cpu_at, cpu
        mid = interval.start + seconds / 2
        asked = rate_at(POINTS, mid)
        users = self.environment.runner.user_count if self.environment.runner else 0
        line = interval.record(
            epoch=round(self.epoch0 + interval.start, 3),
            target_rps=None if asked is None else round(asked, 2),
            users=users,
            cpu=round(used / seconds, 3),
        )
        print("LOADTEST " + json.dumps(line), flush=True)

    def _loop(self) -> None:
        index = 0
        while True:
            gevent.sleep(max(0.0, self.t0 + (index + 1) * INTERVAL_SECONDS - time.monotonic()))
            self.emit(index, INTERVAL_SECONDS)
            index += 1

    def stop(self) -> None:
        """The interval the run ended in, with its actual length (the run may end between boundaries)."""
        if not self.t0:
            return
        self.loop.kill(block=False)
        elapsed = time.monotonic() - self.t0
        index = interval_index(elapsed, INTERVAL_SECONDS)
        seconds = elapsed - index * INTERVAL_SECONDS
        if seconds > 0.5:
            self.emit(index, seconds)
        self.t0 = 0.0


INTERVALS = Intervals()


@events.test_start.add_listener
def _start(environment: Any, **_: Any) -> None:
    INTERVALS.start(environment)


@events.request.add_listener
def _request(response_time: float, exception: Any, **_: Any) -> None:
    INTERVALS.on_request(response_time, exception)


@events.test_stop.add_listener
def _stop(environment: Any, **_: Any) -> None:
    INTERVALS.stop()

