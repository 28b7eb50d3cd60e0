"""The arrival trace: CSV rows read one at a time, checked, and turned into intervals of arrivals.

Two forms, with an optional header line and an optional UTF-8 byte-order mark:
  t_seconds,arrivals   one row per interval, times strictly increasing; an interval lasts until the
                       next row's time (the last one: --step, else as long as the one before it);
  arrivals             one count per row, each interval --step seconds long.
Times are shifted so that the first row is at 0 (epoch seconds work as they are). A bad row is refused
with a TraceError naming it; nothing of the file is held but the row being read, so a trace of any length
can be read, twice if need be (`TraceFile`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Further than this from the first row, times are more likely milliseconds than seconds (and the run would
# take days): about three years.
MAX_SPAN_SECONDS = 1e8
SINGLE_ROW_SECONDS = 60.0  # the length of a lone row's interval, without --step

Interval = tuple[float, float, float]  # start (s), arrivals, length (s)


class TraceError(ValueError):
    """A trace that cannot be simulated; the message is one line and names the row (or the flag)."""


@dataclass(frozen=True)
class Trace:
    """Arrival counts per interval: interval i covers [starts[i], starts[i] + lengths[i])."""

    starts: tuple[float, ...]
    counts: tuple[float, ...]
    lengths: tuple[float, ...]

    @property
    def end(self) -> float:
        return self.starts[-1] + self.lengths[-1] if self.starts else 0.0

    def intervals(self) -> Iterator[Interval]:
        return zip(self.starts, self.counts, self.lengths, strict=True)


@dataclass
class TraceScan:
    """What reading a trace learnt, filled in as its rows go by."""

    rows: int = 0  # data rows read so far
    origin: float = 0.0  # the first row's time, subtracted from every time
    end: float = 0.0  # where the last interval read ends (shifted)
    arrivals: float = 0.0  # the sum of the counts


def read_intervals(
    lines: Iterable[str], step: float | None, scan: TraceScan | None = None
) -> Iterator[Interval]:
    """The trace's intervals in order, shifted to start at 0; a TraceError at the first bad row."""
    if step is not None and not (math.isfinite(step) and step > 0):
        raise TraceError(f"--step must be a number of seconds > 0, got {step:g}")
    scan = TraceScan() if scan is None else scan
    reader = csv.reader(lines)
    columns = 0
    header_allowed = True
    last: tuple[int, float, float] | None = None  # row, time, count of the row not yet yielded
    gap = SINGLE_ROW_SECONDS  # the length of the interval before it
    for cells in reader:
        row = reader.line_num
        values = [c.strip() for c in cells]
        while values and not values[-1]:
            values.pop()
        if not values:
            continue
        if header_allowed and not _is_number(values[0]):
            header_allowed = False
            continue  # a header
        header_allowed = False
        if columns == 0:
            columns = len(values)
            if columns not in (1, 2):
                raise TraceError(
                    f"row {row}: expected t_seconds,arrivals or one count per row, got {len(values)} values"
                )
            if columns == 1 and step is None:
                raise TraceError("a trace of one column (arrivals per interval) needs --step SECONDS")
        elif len(values) != columns:
            shape = "t_seconds,arrivals (2 values)" if columns == 2 else "one count"
            raise TraceError(f"row {row}: expected {shape} like the rows before, got {len(values)}")
        if columns == 1:
            assert step is not None
            time, count = scan.rows * step, _count(values[0], row)
        else:
            time, count = _time(values[0], row), _count(values[1], row)
        if scan.rows == 0:
            scan.origin = time
        time -= scan.origin
        if last is not None:
            if time <= last[1]:
                raise TraceError(
                    f"row {row}: time {values[0]} is not after row {last[0]}'s; times must increase"
                )
            gap = time - last[1]
            yield _interval(scan, last[1], last[2], gap)
        if time > MAX_SPAN_SECONDS:
            raise TraceError(
                f"row {row} is {time:.3g} s after the first row, more than {MAX_SPAN_SECONDS:.0e} s "
                "(3 years): are the times in seconds?"
            )
        scan.rows += 1
        last = (row, time, count)
    if last is None:
        raise TraceError("no rows of arrivals")
    yield _interval(scan, last[1], last[2], gap if step is None else step)


def _interval(scan: TraceScan, start: float, count: float, length: float) -> Interval:
    scan.end = start + length
    scan.arrivals += count
    return start, count, length


def _time(text: str, row: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"row {row}: time {text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise TraceError(f"row {row}: time {text} is not a finite number of seconds")
    if value < 0:
        raise TraceError(f"row {row}: time {text} is negative; times are seconds, from 0 or since the epoch")
    return value


def _count(text: str, row: int) -> float:
    try:
        value = float(text)
    except ValueError:
        raise TraceError(f"row {row}: arrivals {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise TraceError(f"row {row}: arrivals {text} must be a finite number >= 0")
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_trace(text: str, step: float | None = None) -> Trace:
    """A trace held whole, from its text (for tests and benchmarks; the CLI streams a `TraceFile`)."""
    rows = list(read_intervals(text.splitlines(), step))
    return Trace(tuple(r[0] for r in rows), tuple(r[1] for r in rows), tuple(r[2] for r in rows))


class TraceFile:
    """A trace on disk, read row by row each time its intervals are asked for."""

    def __init__(self, path: Path, step: float | None) -> None:
        self.path = path
        self.step = step

    def intervals(self, scan: TraceScan | None = None) -> Iterator[Interval]:
        with self.path.open("rb") as binary:
            yield from read_intervals(_decoded(binary), self.step, scan)


def _decoded(binary: Iterable[bytes]) -> Iterator[str]:
    for number, raw in enumerate(binary, 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TraceError(f"row {number}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        yield text.removeprefix("\ufeff") if number == 1 else text
