"""The tasks a run replays: arrival times drawn from the trace (Poisson within each interval) and a
service time for each, from one seeded RNG, so every rule sees exactly the same tasks.

Held whole (`make_workload`, for the oracle, benchmarks and tests) or drawn one at a time as the trace is
read (`TaskStream`, for `scalekeeper simulate` on a trace of any length): both give the same tasks.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from .trace import Interval, Trace, TraceError

DISTRIBUTIONS = ("exponential", "constant", "lognormal")


@dataclass(frozen=True)
class ServiceTime:
    mean_seconds: float
    distribution: str = "exponential"

    def draw(self, rng: random.Random) -> float:
        if self.distribution == "constant":
            return self.mean_seconds
        if self.distribution == "lognormal":
            # sigma 1: a long right tail (a few tasks 5-10x the mean), as real task mixes have.
            sigma = 1.0
            return rng.lognormvariate(math.log(self.mean_seconds) - sigma * sigma / 2, sigma)
        return rng.expovariate(1.0 / self.mean_seconds)


@dataclass(frozen=True)
class Workload:
    """Every random draw of a run, made once so each rule sees exactly the same tasks."""

    arrivals: tuple[float, ...]
    services: tuple[float, ...]


def arrival_times(intervals: Iterable[Interval], rng: random.Random) -> Iterator[float]:
    for start, count, length in intervals:
        if count <= 0:
            continue
        # A Poisson process at the interval's mean rate: exponential gaps until its end.
        rate = count / length
        t = start + rng.expovariate(rate)
        while t < start + length:
            yield t
            t += rng.expovariate(rate)


def make_workload(trace: Trace, service: ServiceTime, seed: int) -> Workload:
    rng = random.Random(seed)
    arrivals = tuple(arrival_times(trace.intervals(), rng))
    # The service times are drawn after every arrival, from the same RNG.
    services = tuple(service.draw(rng) for _ in arrivals)
    return Workload(arrivals, services)


class TaskStream:
    """The tasks `make_workload` would draw, as (arrival, service) one at a time, reading the trace twice:
    once here, to count the arrivals and learn the RNG's state after the last of them (where the service
    times begin), then once per iteration. `intervals` reads the trace afresh on each call."""

    def __init__(self, intervals: Callable[[], Iterable[Interval]], service: ServiceTime, seed: int) -> None:
        self.intervals = intervals
        self.service = service
        self.seed = seed
        rng = random.Random(seed)
        self.count = 0
        for _ in arrival_times(intervals(), rng):
            self.count += 1
        self._services_from = rng.getstate()

    def __iter__(self) -> Iterator[tuple[float, float]]:
        arrivals = random.Random(self.seed)
        services = random.Random()
        services.setstate(self._services_from)
        draw = self.service.draw
        count = 0
        for t in arrival_times(self.intervals(), arrivals):
            count += 1
            yield t, draw(services)
        if count != self.count:
            raise TraceError(f"the trace changed while it was read ({self.count} tasks, then {count})")

    def workload(self) -> Workload:
        """Every task held whole (for the oracle)."""
        tasks = list(self)
        return Workload(tuple(a for a, _ in tasks), tuple(s for _, s in tasks))
