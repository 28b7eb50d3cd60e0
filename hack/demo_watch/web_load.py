"""The demo's web load: `make loadtest`'s locust (its image and locustfile, manifests/examples/loadtest) as a
pod in the demo's namespace, headless and CPU-capped, the demo's ramp as the points of its LoadTestShape, and
its per-10 s intervals (p50/p95/p99 and failures of the requests completed in each) read from its log as they
come, parsed by bench.loadtest's own reader."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

from bench.common import apply_object, cluster_env, kubectl
from bench.loadtest.cluster import LOCUST_POD, follow_locust, locust_pod
from bench.loadtest.report import IntervalLine, parse_line

# Its limit is make loadtest's (locust shares the node's two cores with what it measures; at the demo's 60
# requests/s it used about 0.1 of a core there); its request is as small as the loadgen pod's: the demo's
# pods already ask nearly all the node has (see demo_app).
CPU_REQUEST, CPU_LIMIT = "10m", "500m"
# Every request asks 2 ms of CPU (the loadgen's old `?ms=2`): the request-rate floor, not CPU, sizes web. A
# tenth of them are purchases, one 0.1 s task each on the emails queue, which its one worker carries.
LOCUST_ENV = {"BROWSE_MS": "2", "SEARCH_MS": "2", "PURCHASE_QUEUE": "emails", "RATE_PER_USER": "0.5"}


class WebLoad:
    """The locust pod: replaced at begin(), followed in a thread, deleted by stop() if still running."""

    def __init__(self, core: Any, namespace: str, image: str, points: str, log_path: Path) -> None:
        self.core, self.ns, self.image, self.points = core, namespace, image, points
        self.kubeconfig = os.environ.get("KUBECONFIG") or cluster_env()["KUBECONFIG"]
        self.log_path = log_path
        self._intervals: list[IntervalLine] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self.failure: str | None = None

    def begin(self, timeout: float) -> None:
        """A previous run's pod goes first (a pod's env cannot change); then this run's."""
        kubectl(
            self.kubeconfig, "-n", self.ns, "delete", "pod", LOCUST_POD, "--ignore-not-found", "--wait=true"
        )
        env = {"LOAD_POINTS": self.points, **LOCUST_ENV}
        apply_object(self.kubeconfig, self.ns, locust_pod(self.image, env, CPU_REQUEST, CPU_LIMIT))
        self._timeout = timeout
        self._thread.start()

    def _follow(self) -> None:
        with self.log_path.open("a") as log:

            def on_line(line: str) -> None:
                interval = parse_line(line.rstrip("\n"))
                if interval is None:
                    log.write(line)
                    log.flush()
                    return
                with self._lock:
                    self._intervals.append(interval)

            try:
                follow_locust(self.core, self.kubeconfig, self.ns, on_line, self._timeout)
            except Exception as exc:  # the live view goes on without latency; run() says why after
                self.failure = f"following the locust pod failed: {type(exc).__name__}: {exc}"[:200]

    def intervals(self) -> list[IntervalLine]:
        with self._lock:
            return list(self._intervals)

    def origin(self) -> float | None:
        """The epoch of locust's own t=0 (its points' time origin), once it reported an interval."""
        first = self.intervals()[:1]
        return first[0].epoch - first[0].start if first else None

    def finished(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def stop(self) -> None:
        if self._thread.is_alive():
            with contextlib.suppress(RuntimeError):
                kubectl(self.kubeconfig, "-n", self.ns, "delete", "pod", LOCUST_POD, "--wait=false")
            self._thread.join(timeout=15)


def latency_json(intervals: list[IntervalLine], start: float) -> list[dict[str, Any]]:
    """The intervals for the record and the plot: times in seconds since the live view began."""
    return [
        {
            "rel": round(i.epoch - start, 2),
            "seconds": i.seconds,
            "requests": i.requests,
            "failures": i.failures,
            "p50": i.p50,
            "p95": i.p95,
            "p99": i.p99,
        }
        for i in intervals
    ]
