"""bench.loadtest's figures, from the load generator's interval lines and the replicas watched: per run the
intervals over the latency aim, failures, peak replicas, the table side by side, and the plot."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARK = "LOADTEST "


@dataclass(frozen=True)
class IntervalLine:
    """One interval as the locustfile printed it (shape.Interval.record)."""

    index: int
    start: float
    seconds: float
    requests: int
    failures: int
    p50: float | None
    p95: float | None
    p99: float | None
    target_rps: float | None
    users: int
    cpu: float
    epoch: float
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


def parse_line(line: str) -> IntervalLine | None:
    """The interval of a `LOADTEST {json}` log line; None for any other line (locust's own output)."""
    if not line.startswith(MARK):
        return None
    d = json.loads(line[len(MARK) :])
    return IntervalLine(
        index=int(d["interval"]),
        start=float(d["start"]),
        seconds=float(d["seconds"]),
        requests=int(d["requests"]),
        failures=int(d["failures"]),
        p50=d["p50"],
        p95=d["p95"],
        p99=d["p99"],
        target_rps=d["target_rps"],
        users=int(d["users"]),
        cpu=float(d["cpu"]),
        epoch=float(d["epoch"]),
        errors={str(k): int(v) for k, v in d.get("errors", {}).items()},
    )


def parse_log(lines: Iterable[str]) -> list[IntervalLine]:
    return [i for i in (parse_line(line.rstrip("\n")) for line in lines) if i is not None]


@dataclass
class RunRecord:
    """One run: its intervals, and the web Deployment's (time from the load's start, spec.replicas, ready)."""

    name: str
    label: str
    intervals: list[IntervalLine]
    replicas: list[tuple[float, int, int]]
    locust_cpu_limit: str = ""
    notes: list[str] = field(default_factory=list)
    # The ScalingPolicy run's Bottleneck condition at its end (empty for the others).
    bottleneck: str = ""


def over(interval: IntervalLine, aim_ms: float) -> bool:
    """Over the aim: its p95 above it, or no request completed in it (nothing was served in time)."""
    return interval.p95 is None or interval.p95 > aim_ms


@dataclass(frozen=True)
class Summary:
    intervals: int
    over_aim: int
    over_starts: tuple[float, ...]
    requests: int
    failures: int
    peak_replicas: int
    peak_ready: int
    worst_p95: float
    share_within: float
    cpu_mean: float
    cpu_max: float


def summarize(run: RunRecord, aim_ms: float) -> Summary:
    """The figures of one run. The last interval counts only when it is at least half an interval long."""
    full = [i for i in run.intervals if i.seconds >= 0.5 * max((j.seconds for j in run.intervals), default=0)]
    late = [i for i in full if over(i, aim_ms)]
    p95s = [i.p95 for i in full if i.p95 is not None]
    cpus = [i.cpu for i in full]
    return Summary(
        intervals=len(full),
        over_aim=len(late),
        over_starts=tuple(i.start for i in late),
        requests=sum(i.requests for i in full),
        failures=sum(i.failures for i in full),
        peak_replicas=max((r for _, r, _ in run.replicas), default=0),
        peak_ready=max((r for _, _, r in run.replicas), default=0),
        worst_p95=max(p95s, default=math.nan),
        share_within=(len(full) - len(late)) / len(full) if full else math.nan,
        cpu_mean=sum(cpus) / len(cpus) if cpus else math.nan,
        cpu_max=max(cpus, default=math.nan),
    )


def interval_table(run: RunRecord, aim_ms: float) -> str:
    """Every interval of a run: asked and sent rate, users, p50/p95/p99, failures, locust's CPU, replicas."""
    rows = [
        f"{'t (s)':>6} {'asked/s':>8} {'sent/s':>7} {'users':>5} {'p50':>7} {'p95':>7} {'p99':>7} "
        f"{'fail':>5} {'cpu':>5} {'web':>4}"
    ]
    for i in run.intervals:
        web = replicas_at(run.replicas, i.start + i.seconds)
        mark = " *" if over(i, aim_ms) else ""
        rows.append(
            f"{i.start:6.0f} {fmt(i.target_rps, '.1f'):>8} {i.rps:7.1f} {i.users:5d} {fmt(i.p50):>7} "
            f"{fmt(i.p95):>7} {fmt(i.p99):>7} {i.failures:5d} {i.cpu:5.2f} {web:4d}{mark}"
        )
    return "\n".join(rows)


def replicas_at(samples: Sequence[tuple[float, int, int]], t: float) -> int:
    """spec.replicas at `t` (the last sample at or before it; 0 before the first)."""
    value = 0
    for at, n, _ in samples:
        if at > t:
            break
        value = n
    return value


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


def side_by_side(runs: Sequence[RunRecord], aim_ms: float) -> str:
    """One column per run."""
    sums = [summarize(r, aim_ms) for r in runs]
    rows: list[tuple[str, list[str]]] = [
        ("10 s intervals", [str(s.intervals) for s in sums]),
        (f"  with p95 > {aim_ms:g} ms", [str(s.over_aim) for s in sums]),
        (f"  share p95 <= {aim_ms:g} ms", [fmt(100 * s.share_within, ".1f") + " %" for s in sums]),
        ("worst interval p95 (ms)", [fmt(s.worst_p95) for s in sums]),
        ("requests", [str(s.requests) for s in sums]),
        ("errors (failed requests)", [str(s.failures) for s in sums]),
        ("peak web replicas (spec)", [str(s.peak_replicas) for s in sums]),
        ("peak web replicas (ready)", [str(s.peak_ready) for s in sums]),
        (
            "locust CPU mean / max (cores)",
            [f"{fmt(s.cpu_mean, '.2f')} / {fmt(s.cpu_max, '.2f')}" for s in sums],
        ),
    ]
    width = max(len(r.label) for r in runs) + 2
    head = f"{'':30}" + "".join(f"{r.label:>{width}}" for r in runs)
    return "\n".join(
        [head] + [f"{name:30}" + "".join(f"{v:>{width}}" for v in values) for name, values in rows]
    )


def over_list(run: RunRecord, aim_ms: float) -> str:
    starts = summarize(run, aim_ms).over_starts
    return ", ".join(f"{t:g}" for t in starts) if starts else "none"


def records_json(runs: Sequence[RunRecord]) -> list[dict[str, Any]]:
    return [
        {
            "name": r.name,
            "label": r.label,
            "intervals": [i.__dict__ for i in r.intervals],
            "replicas": r.replicas,
            "locust_cpu_limit": r.locust_cpu_limit,
            "notes": r.notes,
            "bottleneck": r.bottleneck,
        }
        for r in runs
    ]


def records_from_json(data: Sequence[dict[str, Any]]) -> list[RunRecord]:
    return [
        RunRecord(
            name=d["name"],
            label=d["label"],
            intervals=[IntervalLine(**i) for i in d["intervals"]],
            replicas=[(float(t), int(n), int(r)) for t, n, r in d["replicas"]],
            locust_cpu_limit=d.get("locust_cpu_limit", ""),
            notes=list(d.get("notes", [])),
            bottleneck=str(d.get("bottleneck", "")),
        )
        for d in data
    ]


def plot(runs: Sequence[RunRecord], path: Path, aim_ms: float) -> None:
    """Per run a column: p95 (and p99) per interval with the aim and the rate asked, above the web tier's
    replicas (spec and ready) over the same time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(runs), figsize=(5.5 * len(runs), 7), sharex=True, squeeze=False)
    top = max((i.p99 or 0 for r in runs for i in r.intervals), default=aim_ms)
    peak = max((n for r in runs for _, n, _ in r.replicas), default=1)
    asked_peak = max((max(i.target_rps or 0, i.rps) for r in runs for i in r.intervals), default=1.0)
    for col, run in enumerate(runs):
        lat, reps = axes[0][col], axes[1][col]
        mids = [i.start + i.seconds / 2 for i in run.intervals]
        lat.step(mids, [i.p95 or math.nan for i in run.intervals], where="mid", label="p95", color="C0")
        lat.step(
            mids, [i.p99 or math.nan for i in run.intervals], where="mid", label="p99", color="C0", alpha=0.35
        )
        lat.axhline(aim_ms, color="C3", linestyle="--", label=f"{aim_ms:g} ms")
        lat.set_yscale("log")
        lat.set_ylim(5, max(top, aim_ms) * 1.5)
        s = summarize(run, aim_ms)
        lat.set_title(
            f"{run.label}\n{s.over_aim}/{s.intervals} intervals over, {s.failures} errors", fontsize=10
        )
        rate = lat.twinx()
        rate.plot(mids, [i.target_rps or math.nan for i in run.intervals], color="grey", linestyle=":")
        rate.plot(mids, [i.rps for i in run.intervals], color="grey", alpha=0.6, label="sent/s")
        rate.set_ylabel("requests/s (dotted: asked)")
        rate.set_ylim(0, asked_peak * 1.1)
        # the last sample held to the run's end (a sample is taken only when something changes)
        end = (
            [(run.intervals[-1].start + run.intervals[-1].seconds, *run.replicas[-1][1:])]
            if run.replicas and run.intervals
            else []
        )
        samples = [*run.replicas, *end]
        ts = [t for t, _, _ in samples]
        reps.step(ts, [n for _, n, _ in samples], where="post", label="web spec.replicas", color="C2")
        reps.step(ts, [r for _, _, r in samples], where="post", label="web ready", color="C1", alpha=0.7)
        reps.set_ylim(0, peak + 1)
        reps.set_xlabel("seconds from the load's start")
        if col == 0:
            lat.set_ylabel("latency per 10 s interval (ms)")
            reps.set_ylabel("web replicas")
            lat.legend(loc="upper left", fontsize=8)
            reps.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
