"""The load test's pure parts, shared by the locustfile (in the image) and bench.loadtest (loaded by path):
the load as requests per second over time, the users that offer it, and one 10 s interval's figures.

The load is a list of points `t:rps` ("0:6,60:60,240:60"): linear between points, a step where two points
share a time, over when the last point is passed. Each user starts its requests at exponentially distributed
gaps of mean 1 / per_user seconds (Pacer), so `users = ceil(rps / per_user)` users send Poisson arrivals at
the rate asked for. Users started at one instant and paced at fixed gaps (locust's constant_throughput)
would send every request in bursts, all at once: a web pod then serves a queue, not a rate. A user whose
response comes after its next start time sends at once and paces from there (a closed loop when the
service is slower than the user's rate); the interval records show the rate actually sent beside the one
asked for.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Points = tuple[tuple[float, float], ...]


def parse_points(text: str) -> Points:
    """`t:rps` pairs, comma-separated, times non-decreasing from 0, rates >= 0; ValueError naming the fault."""
    points: list[tuple[float, float]] = []
    for item in text.split(","):
        t_text, sep, rps_text = item.strip().partition(":")
        if not sep:
            raise ValueError(f"load point {item.strip()!r} is not t:rps")
        try:
            t, rps = float(t_text), float(rps_text)
        except ValueError:
            raise ValueError(f"load point {item.strip()!r} is not two numbers") from None
        if not (math.isfinite(t) and math.isfinite(rps)) or t < 0 or rps < 0:
            raise ValueError(f"load point {item.strip()!r}: time and rate must be finite and >= 0")
        if points and t < points[-1][0]:
            raise ValueError(f"load point {item.strip()!r} is earlier than the one before it")
        points.append((t, rps))
    if points[0][0] != 0:
        raise ValueError("the first load point must be at t=0")
    if len(points) < 2:
        raise ValueError("the load needs at least two points (a start and an end)")
    return tuple(points)


def ramp_points(base_rps: float, factor: float, ramp_seconds: float, hold_seconds: float) -> Points:
    """base -> factor x base linearly over ramp_seconds, then held for hold_seconds."""
    peak = base_rps * factor
    return ((0.0, base_rps), (ramp_seconds, peak), (ramp_seconds + hold_seconds, peak))


def format_points(points: Points) -> str:
    return ",".join(f"{t:g}:{rps:g}" for t, rps in points)


def rate_at(points: Points, t: float) -> float | None:
    """Requests per second asked for at `t` seconds; None once the last point is passed (the run is over).
    At a step (two points at one time) the later point's rate holds from that time on."""
    if t < 0 or t >= points[-1][0]:
        return None
    rate = points[0][1]
    for (t0, r0), (t1, r1) in zip(points, points[1:], strict=False):
        if t0 <= t < t1:
            return r0 + (r1 - r0) * (t - t0) / (t1 - t0)
        if t >= t1:
            rate = r1
    return rate


def users_for(rps: float, per_user: float) -> int:
    """Users that offer `rps` at `per_user` requests per second each."""
    if per_user <= 0:
        raise ValueError("per_user must be > 0")
    # round first: 6 / 0.5 in floating point must not become 13 users
    return math.ceil(round(rps / per_user, 9))


class Pacer:
    """One user's start times: exponential gaps of mean 1 / rate from a random first start, so that users
    started together do not send together."""

    def __init__(self, rate: float, now: float, rng: random.Random) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate, self.rng = rate, rng
        self.next_at = now + rng.expovariate(rate)

    def wait(self, now: float) -> float:
        """Seconds to wait, at `now` (after a request), before the next request; 0 when it is overdue."""
        # Behind (the last response came after the planned start): pace from now, no catch-up burst.
        self.next_at = max(self.next_at, now)
        wait = self.next_at - now
        self.next_at += self.rng.expovariate(self.rate)
        return wait


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1), as bench.common.percentile; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Interval:
    """The requests that completed within one interval [start, start + seconds) of the run: its
    percentiles are over these requests only, not cumulative."""

    index: int
    start: float
    seconds: float
    response_ms: list[float] = field(default_factory=list)
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, response_ms: float, error: str | None) -> None:
        self.response_ms.append(response_ms)
        if error is not None:
            self.failures += 1
            self.errors[error] = self.errors.get(error, 0) + 1

    def record(self, **extra: Any) -> dict[str, Any]:
        """The JSON line printed for this interval (times in ms, rounded to 0.1; nan as null)."""

        def ms(q: float) -> float | None:
            value = percentile(self.response_ms, q)
            return None if math.isnan(value) else round(value, 1)

        return {
            "interval": self.index,
            "start": round(self.start, 3),
            "seconds": round(self.seconds, 3),
            "requests": len(self.response_ms),
            "failures": self.failures,
            "p50": ms(0.50),
            "p95": ms(0.95),
            "p99": ms(0.99),
            "errors": dict(sorted(self.errors.items(), key=lambda kv: -kv[1])[:3]),
            **extra,
        }


def interval_index(elapsed: float, seconds: float) -> int:
    return int(elapsed // seconds)
