"""Runs `scalekeeper run` unchanged, counting every request it sends to the API server (for bench.scale).

    python -m bench.counted_operator COUNTS.json

The operator's own metrics count scale writes and Prometheus requests, but not its reads, its status patches
or kopf's requests. Both HTTP clients are wrapped here (the kubernetes client the cycles use, aiohttp that
kopf uses) so the benchmark can divide reads and writes by the cycles that made them. Counts are written to
COUNTS.json every second as {"<client> <VERB> <resource>[/<subresource>]": n, "cycles": n} (cycles: calls
of Reconciler.run); a counter is one dict increment, which is nothing next to the request it counts.
With BENCH_STATUS_TRACE=<file>, the body of every status patch is appended to that file (JSON lines).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

_COUNTS: Counter[str] = Counter()
_LOCK = threading.Lock()

# /api/v1[/namespaces/<ns>]/<plural>[/<name>[/<sub>]] and /apis/<group>/<version>/...
_PATH = re.compile(
    r"^/(?:api/v1|apis/[^/]+/[^/]+)(?:/namespaces/(?P<ns>[^/]+))?"
    r"(?:/(?P<plural>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?)?/?$"
)


def request_kind(method: str, url: str, params: Mapping[str, Any] | None = None) -> str:
    """`GET deployments/scale`, `LIST horizontalpodautoscalers`, `WATCH scalingpolicies`, `PATCH ...`."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update({str(k): str(v) for k, v in (params or {}).items()})
    match = _PATH.match(parts.path)
    if match is None:
        return f"{method.upper()} {parts.path}"
    if match["plural"] is None and match["ns"] is None:
        return f"{method.upper()} (discovery)"
    plural = match["plural"] or "namespaces"
    verb = method.upper()
    if verb == "GET" and match["name"] is None:
        verb = "WATCH" if query.get("watch") in ("true", "1", "True") else "LIST"
    return f"{verb} {plural}/{match['sub']}" if match["sub"] else f"{verb} {plural}"


def _count(client_name: str, kind: str) -> None:
    with _LOCK:
        _COUNTS[f"{client_name} {kind}"] += 1


def _status_tracer(path: Path | None) -> Callable[[str, Any], None]:
    """With a path: every status patch's body, one JSON line each, so the benchmark can tell which fields
    made an idle policy write."""
    if path is None:
        return lambda url, body: None
    lock = threading.Lock()

    def trace(url: str, body: Any) -> None:
        line = json.dumps({"at": time.time(), "path": urlsplit(url).path, "body": body}, default=str)
        with lock, path.open("a") as f:
            f.write(line + "\n")

    return trace


def _wrap_kubernetes_client(status_trace: Path | None) -> None:
    from kubernetes.client import rest

    original: Callable[..., Any] = rest.RESTClientObject.request
    trace = _status_tracer(status_trace)

    def request(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        kind = request_kind(method, url)
        _count("client", kind)
        if kind == "PATCH scalingpolicies/status":
            trace(url, kwargs.get("body"))
        return original(self, method, url, *args, **kwargs)

    rest.RESTClientObject.request = request


def _wrap_aiohttp() -> None:
    import aiohttp

    original: Callable[..., Any] = aiohttp.ClientSession._request

    async def _request(self: Any, method: str, str_or_url: Any, *args: Any, **kwargs: Any) -> Any:
        params = kwargs.get("params")
        _count("kopf", request_kind(method, str(str_or_url), params if isinstance(params, Mapping) else None))
        return await original(self, method, str_or_url, *args, **kwargs)

    aiohttp.ClientSession._request = _request  # type: ignore[method-assign]


CYCLES = "cycles"


def _wrap_reconciler() -> None:
    """Cycles are counted in the same file as requests, so a ratio of the two never straddles a snapshot."""
    from scalekeeper.cycle import Reconciler

    original: Callable[..., Any] = Reconciler.run

    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original(self, *args, **kwargs)
        finally:
            with _LOCK:
                _COUNTS[CYCLES] += 1

    Reconciler.run = run  # type: ignore[method-assign]


def _dump_forever(path: Path, every: float) -> None:
    while True:
        with _LOCK:
            snapshot = dict(_COUNTS)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(snapshot, sort_keys=True))
        # A rename, so the benchmark never reads half a file.
        os.replace(tmp, path)
        time.sleep(every)


def main() -> int:
    # `--help` would otherwise be taken for COUNTS.json and start the operator.
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    trace = os.environ.get("BENCH_STATUS_TRACE")
    _wrap_kubernetes_client(Path(trace) if trace else None)
    _wrap_aiohttp()
    _wrap_reconciler()
    threading.Thread(
        target=_dump_forever, args=(Path(sys.argv[1]), 1.0), name="bench-request-counts", daemon=True
    ).start()
    from scalekeeper.cli import main as scalekeeper_main

    return int(scalekeeper_main(["run"]))


if __name__ == "__main__":
    sys.exit(main())
