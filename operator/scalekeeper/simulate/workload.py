"""The simulator's input: an arrival trace, service times, and the tasks drawn from both."""

from __future__ import annotations

import csv
import itertools
import math
import random
from dataclasses import dataclass

DISTRIBUTIONS = ("exponential", "constant", "lognormal")


@dataclass(frozen=True)
class Trace:
    """Arrival counts per interval: interval i covers [starts[i], starts[i] + lengths[i])."""

    starts: tuple[float, ...]
    counts: tuple[float, ...]
    lengths: tuple[float, ...]

    @property
    def end(self) -> float:
        return self.starts[-1] + self.lengths[-1] if self.starts else 0.0


def parse_trace(text: str, step: float | None = None) -> Trace:
    """`t_seconds,arrivals` rows (header optional), or a bare column of counts with `step`."""
    rows = [r for r in csv.reader(text.splitlines()) if r and any(c.strip() for c in r)]
    if rows and not _is_number(rows[0][0]):
        rows = rows[1:]  # header
    if not rows:
        raise ValueError("trace has no rows")
    if all(len([c for c in r if c.strip()]) == 1 for r in rows):
        if step is None or step <= 0:
            raise ValueError("a trace with one column needs --step SECONDS")
        counts = tuple(float(r[0]) for r in rows)
        starts = tuple(i * step for i in range(len(counts)))
        return Trace(starts, _check_counts(counts), tuple(step for _ in counts))
    starts = tuple(float(r[0]) for r in rows)
    counts = _check_counts(tuple(float(r[1]) for r in rows))
    if any(b <= a for a, b in itertools.pairwise(starts)):
        raise ValueError("trace times must be strictly increasing")
    last = step if step is not None else (starts[-1] - starts[-2] if len(starts) > 1 else 60.0)
    lengths = (*(b - a for a, b in itertools.pairwise(starts)), last)
    return Trace(starts, counts, lengths)


def _check_counts(counts: tuple[float, ...]) -> tuple[float, ...]:
    if any(not math.isfinite(c) or c < 0 for c in counts):
        raise ValueError("arrival counts must be finite and >= 0")
    return counts


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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


def make_workload(trace: Trace, service: ServiceTime, seed: int) -> Workload:
    rng = random.Random(seed)
    arrivals: list[float] = []
    for start, count, length in zip(trace.starts, trace.counts, trace.lengths, strict=True):
        if count <= 0:
            continue
        # A Poisson process at the interval's mean rate: exponential gaps until its end.
        rate = count / length
        t = start + rng.expovariate(rate)
        while t < start + length:
            arrivals.append(t)
            t += rng.expovariate(rate)
    services = tuple(service.draw(rng) for _ in arrivals)
    return Workload(tuple(arrivals), services)
