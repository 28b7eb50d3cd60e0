"""The operator's metrics port, served for real on a loopback port: /metrics, and /readyz answering 503
until the watches have listed."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

from scalekeeper.opmetrics import OperatorMetrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_readyz_follows_the_watches_and_metrics_are_served_beside_it() -> None:
    listed = [False]
    port = _free_port()
    OperatorMetrics().serve(port, ready=lambda: listed[0], address="127.0.0.1")
    base = f"http://127.0.0.1:{port}"
    assert _get(f"{base}/readyz") == (503, "not ready: the watches have not listed yet\n")
    listed[0] = True
    assert _get(f"{base}/readyz") == (200, "ready\n")
    status, body = _get(f"{base}/metrics")
    assert status == 200 and "scalekeeper_serving" in body


def test_write_errors_are_exported_at_zero_before_the_first() -> None:
    """An alert's increase() sees the first error only if the series existed before it."""
    metrics = OperatorMetrics()
    errors = {"kind": "Deployment", "outcome": "error"}
    assert metrics.registry.get_sample_value("scalekeeper_scale_writes_total", errors) == 0
    metrics.write("Deployment", "error")
    assert metrics.registry.get_sample_value("scalekeeper_scale_writes_total", errors) == 1
