"""bench.reaction_peer's report: p50/p95/max per setting and row, the p95 ratios, the JSON, the plot."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.reaction import pct
from bench.reaction_peer.autoscalers import KEDA, SK
from bench.reaction_peer.signals import Setup
from bench.reaction_peer.steps import Bench, Step


@dataclass(frozen=True)
class Row:
    target: str
    origin: str  # "written" or "queryable"
    label: str


# What each signal's table shows. KEDA comes last; each scalekeeper row gets the ratio KEDA p95 / its p95.
ROWS = {
    "prometheus": (Row(SK, "queryable", "scalekeeper"), Row(KEDA, "queryable", "KEDA")),
    "redis-list": (
        Row(SK, "written", "scalekeeper, from write"),
        Row(SK, "queryable", "scalekeeper, from queryable"),
        Row(KEDA, "written", "KEDA, from write"),
    ),
    "web": (Row(SK, "queryable", "scalekeeper web tier"), Row(KEDA, "queryable", "KEDA")),
}


@dataclass(frozen=True)
class Stats:
    row: Row
    n: int
    p50: float
    p95: float
    max: float
    timed_out: int
    ratio: float | None  # KEDA's p95 / this row's p95, on scalekeeper rows


def summary(values: list[float | None], timeout: float) -> tuple[list[float], int]:
    """The measured values, a timeout counted as the timeout itself (so percentiles are lower bounds)."""
    return [timeout if v is None else v for v in values], sum(v is None for v in values)


def table(steps: list[Step], rows: tuple[Row, ...], timeout: float) -> list[Stats]:
    """p50/p95/max of each row over the steps that moved its target, and the p95 ratios."""
    measured: list[tuple[Row, list[float], int]] = []
    for row in rows:
        values, missed = summary(
            [s.reaction(row.target, row.origin) for s in steps if row.target in s.seen], timeout
        )
        if values:
            measured.append((row, values, missed))
    keda = next((pct(v, 0.95) for r, v, _ in measured if r.target == KEDA), None)
    out = []
    for row, values, missed in measured:
        p95 = pct(values, 0.95)
        ratio = keda / p95 if keda is not None and row.target != KEDA and p95 > 0 else None
        out.append(Stats(row, len(values), pct(values, 0.5), p95, max(values), missed, ratio))
    return out


SETTINGS = {
    "defaults-up": (
        "defaults, up",
        "KEDA defaults (pollingInterval 30, cooldownPeriod 300, default HPA behavior), scale-up steps only: "
        "ladder 30->40->...->100, one replica a step",
    ),
    "defaults-down": (
        "defaults, down",
        "KEDA defaults, one scale-down step 100->30 (the default 300 s scale-down stabilization window)",
    ),
    "fastest": (
        "fastest",
        "KEDA fastest (pollingInterval 1; HPA behavior stabilization 0, 100%/1s + 100 pods/1s both ways), "
        "steps alternating 30/70",
    ),
}
ORIGINS = {
    "queryable": "value queryable in Prometheus",
    "written": "the write returned (Redis command or kubectl exec)",
}


def results(bench: Bench, signal: str, timeouts: dict[str, float]) -> dict[str, list[Stats]]:
    """Per setting, the table over its steps; with a rises-only target, over the rises alone (every row
    over the same steps, so the ratios compare like with like)."""
    return {
        phase: table(
            [s for s in bench.steps if s.phase == phase and (s.rise or not bench.rises_only)],
            ROWS[signal],
            timeouts[phase],
        )
        for phase in SETTINGS
    }


def report(
    bench: Bench,
    signal: str,
    setup: Setup,
    machine: str,
    sync: tuple[float, str],
    keda_image: str,
    timeouts: dict[str, float],
) -> None:
    print()
    print(f"machine: {machine}")
    print(f"HPA controller sync period: {sync[0]:g} s ({sync[1]}); Prometheus scrape interval 1 s")
    print(f"KEDA image {keda_image}; scalekeeper: local operator, ScalingPolicy intervalSeconds 1")
    print(f"signal {signal}: {setup.describe}")
    origins = sorted({row.origin for row in ROWS[signal]})
    for origin in origins:
        print(f"reaction from {origin} = {ORIGINS[origin]} -> watch event of the target's new spec.replicas")
    width = max(len(row.label) for row in ROWS[signal])
    columns = ("n", 3), ("p50", 8), ("p95", 8), ("max", 8), ("p95 ratio", 10)
    print(f"{'setting':15} {'steps':>5}  {'target':{width}}" + "".join(f" {c:>{w}}" for c, w in columns))
    for phase, stats in results(bench, signal, timeouts).items():
        name = SETTINGS[phase][0]
        if not stats:
            print(f"{name:15} {0:5d}  (not run)")
            continue
        count = sum(s.phase == phase for s in bench.steps)
        for i, st in enumerate(stats):
            ratio = "" if st.ratio is None else f"{st.ratio:9.1f}x"
            late = (
                f"  ({st.timed_out} timed out at {timeouts[phase]:.0f} s, counted as that)"
                if st.timed_out
                else ""
            )
            head = f"{name:15} {count:5d}" if i == 0 else " " * 21
            line = (
                f"{head}  {st.row.label:{width}} {st.n:3d} {st.p50:7.2f}s {st.p95:7.2f}s "
                f"{st.max:7.2f}s {ratio:>10}{late}"
            )
            print(line.rstrip())
    scrape = [s.queryable - s.written for s in bench.steps]
    if scrape:
        p50, p95s = pct(scrape, 0.5), pct(scrape, 0.95)
        print(f"write returned -> queryable in Prometheus, all steps: p50 {p50:.2f}s p95 {p95s:.2f}s")
    print("p95 ratio = KEDA p95 / that row's p95 over the same steps")
    for name, text in SETTINGS.values():
        print(f"  {name}: {text}")
    for note in bench.notes:
        print(f"note: {note}")


def write_json(
    bench: Bench,
    signal: str,
    setup: Setup,
    meta: dict[str, Any],
    timeouts: dict[str, float],
    path: str,
) -> None:
    stats = {
        phase: [{**asdict(st), "row": asdict(st.row)} for st in rows]
        for phase, rows in results(bench, signal, timeouts).items()
    }
    doc = {
        "signal": signal,
        "describe": setup.describe,
        **meta,
        "settings": {phase: text for phase, (_, text) in SETTINGS.items()},
        "timeouts": timeouts,
        "stats": stats,
        "steps": [asdict(s) for s in bench.steps],
        "notes": bench.notes,
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=1))
    print(f"json: {path}")


def plot(bench: Bench, signal: str, sync: float, png: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    panels = (
        (axes[0], ("fastest",), "KEDA fastest vs scalekeeper, alternating 30/70", False),
        (axes[1], ("defaults-up", "defaults-down"), "KEDA defaults vs scalekeeper (last: scale-down)", True),
    )
    styles = ("o-", "^-", "s--")
    for ax, phases, title, log in panels:
        steps = [s for s in bench.steps if s.phase in phases]
        for row, style in zip(ROWS[signal], styles, strict=False):
            points = [
                (i + 1, s.reaction(row.target, row.origin))
                for i, s in enumerate(steps)
                if row.target in s.seen and s.seen[row.target] is not None
            ]
            # a reaction can be a few ms below 0 (Prometheus polled every 50 ms): floor it for the log scale
            ax.plot([x for x, _ in points], [max(0.01, y or 0.0) for _, y in points], style, label=row.label)
        ax.axhline(sync, color="grey", linestyle=":", label=f"HPA sync period {sync:g} s")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("to scale visible (s)")
        ax.set_title(f"{title} [{signal}]")
        ax.grid(alpha=0.3)
        ax.legend()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100, bbox_inches="tight")
    print(f"plot: {png}")
