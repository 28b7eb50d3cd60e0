"""Arrival traces: CSV rows ``t_seconds,arrivals``, replayed time-compressed.

Row i's arrivals are spread evenly over [t_i, t_{i+1}) (the last row over the previous row's width, or 1 s).
Fractional arrivals are carried over, so the total published is the rounded sum of the column.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def read_pairs(path: str | Path, want: str) -> list[tuple[float, float]]:
    """Rows of two numbers from a CSV file, sorted; a header line and ``#`` comments are skipped. `want`
    names the columns in the error for a bad row."""
    rows: list[tuple[float, float]] = []
    with open(path, newline="") as f:
        for rec in csv.reader(f):
            if not rec or rec[0].strip().startswith("#"):
                continue
            try:
                a, b = float(rec[0]), float(rec[1])
            except (ValueError, IndexError):
                if not rows:  # a header line
                    continue
                raise ValueError(f"{path}: bad row {rec!r} (want {want})") from None
            rows.append((a, b))
    rows.sort()
    return rows


def read_trace(path: str | Path) -> list[tuple[float, float]]:
    rows = read_pairs(path, "t_seconds,arrivals")
    for t, n in rows:
        if n < 0:
            raise ValueError(f"{path}: negative arrivals in row {[t, n]!r}")
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def schedule(rows: list[tuple[float, float]], speedup: float = 1.0) -> Iterator[float]:
    """Offsets in wall seconds (from the start of the replay) of each arrival, in order."""
    if speedup <= 0:
        raise ValueError("speedup must be > 0")
    t0 = rows[0][0]
    carry = 0.0
    for i, (t, n) in enumerate(rows):
        if i + 1 < len(rows):
            width = rows[i + 1][0] - t
        elif i:
            width = t - rows[i - 1][0]
        else:
            width = 1.0
        carry += n
        k = int(carry + 1e-9)
        carry -= k
        for j in range(k):
            yield ((t - t0) + width * j / k) / speedup


def paced(
    offsets: Iterator[float] | list[float], fn: Callable[[int], None], deadline: float | None = None
) -> int:
    """Call fn(i) at each offset (seconds from now), never drifting: late calls run at once. Returns
    calls made."""
    start = time.monotonic()
    count = 0
    for off in offsets:
        now = time.monotonic()
        if deadline is not None and now - start > deadline:
            break
        if off > now - start:
            time.sleep(off - (now - start))
        fn(count)
        count += 1
    return count


def uniform(count: int, rate: float) -> Iterator[float]:
    """Offsets of ``count`` arrivals at ``rate`` per second (rate <= 0: all at once)."""
    for i in range(count):
        yield i / rate if rate > 0 else 0.0
