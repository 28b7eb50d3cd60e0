"""Open-loop HTTP load generator for the web tier: a fixed rate, or a replayed CSV trace, bounded in time.

  python -m scalekeeper_demo.load --url http://web/ --rate 50 --duration 60
  python -m scalekeeper_demo.load --url http://web/ --trace trace.csv --speedup 10

Requests are issued on schedule from a thread pool whatever the latency (open loop): a slow server sees the
offered rate, not a rate throttled by its own slowness, up to --concurrency requests in flight (beyond that,
requests are dropped and counted). Prints a JSON summary line.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from . import trace


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok = 0
        self.errors = 0
        self.dropped = 0
        self.latencies: list[float] = []

    def summary(self) -> dict[str, float | int]:
        lat = sorted(self.latencies)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 4) if lat else 0.0

        return {
            "ok": self.ok,
            "errors": self.errors,
            "dropped": self.dropped,
            "p50_seconds": pct(0.5),
            "p95_seconds": pct(0.95),
            "p99_seconds": pct(0.99),
        }


def run(
    url: str,
    offsets: Iterator[float],
    *,
    concurrency: int = 16,
    timeout: float = 5.0,
    duration: float | None = None,
) -> dict[str, object]:
    stats = Stats()
    slots = threading.BoundedSemaphore(concurrency)

    def one() -> None:
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                resp.read()
                good = 200 <= resp.status < 300
        except (urllib.error.URLError, OSError, ValueError):
            good = False
        finally:
            slots.release()
        with stats.lock:
            if good:
                stats.ok += 1
                stats.latencies.append(time.perf_counter() - start)
            else:
                stats.errors += 1

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:

        def fire(_: int) -> None:
            if slots.acquire(blocking=False):
                pool.submit(one)
            else:
                with stats.lock:
                    stats.dropped += 1

        sent = trace.paced(offsets, fire, deadline=duration)
    out: dict[str, object] = {
        "url": url,
        "offered": sent,
        "elapsed_seconds": round(time.monotonic() - started, 3),
    }
    out.update(stats.summary())
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scalekeeper_demo.load", description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--rate", type=float, default=10.0, help="requests per second (without --trace)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds (bounds a trace replay too)")
    p.add_argument("--trace", default=None, help="CSV of t_seconds,arrivals (requests) to replay")
    p.add_argument("--speedup", type=float, default=1.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--timeout", type=float, default=5.0)
    args = p.parse_args(argv)
    if args.trace:
        offsets = trace.schedule(trace.read_trace(args.trace), args.speedup)
    else:
        if args.rate <= 0:
            p.error("--rate must be > 0")
        offsets = trace.uniform(int(args.rate * args.duration), args.rate)
    print(
        json.dumps(
            run(args.url, offsets, concurrency=args.concurrency, timeout=args.timeout, duration=args.duration)
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
