"""bench.protection's pure parts: the task lines of the workers' logs, the figures counted from them and
from the pod watch's lives (pods removed busy or idle, tasks interrupted and redelivered, seconds in
termination, the time to the target), the printed table and the plot."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

# --------------------------------------------------------------------------- the workers' logs (pure)

# A line of `kubectl logs --timestamps`: the kubelet's RFC 3339 time (UTC, nanoseconds), then Celery's line.
TASK_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z) .*\bTask [\w.]+\[(?P<task>[^\]]+)\] "
    r"(?P<what>received|succeeded in)\b"
)


@dataclass(frozen=True)
class TaskEvent:
    """One task line of one pod's log: `received` (handed to the worker) or `succeeded` (its end)."""

    at: float  # epoch seconds, the kubelet's timestamp of the line
    pod: str
    task: str
    kind: Literal["received", "succeeded"]


def kubelet_time(stamp: str) -> float:
    """Epoch seconds of a kubelet log timestamp (`2026-12-05T17:40:00.123456789Z`)."""
    base, _, frac = stamp.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(base + "+00:00").timestamp()
    return seconds + (float(f"0.{frac}") if frac else 0.0)


def parse_log(pod: str, text: str) -> list[TaskEvent]:
    """The task events of one pod's `kubectl logs --timestamps` output, in order."""
    events = []
    for line in text.splitlines():
        m = TASK_LINE.match(line)
        if m:
            kind: Literal["received", "succeeded"] = "received" if m["what"] == "received" else "succeeded"
            events.append(TaskEvent(kubelet_time(m["at"]), pod, m["task"], kind))
    return events


# --------------------------------------------------------------------------- the figures (pure)


@dataclass
class PodLife:
    """One worker pod as the bench's pod watch saw it, in epoch seconds of this machine's clock."""

    name: str
    created: float
    ready: float | None = None
    deleting: float | None = None  # first seen with a deletionTimestamp
    gone: float | None = None  # the watch's DELETED


@dataclass(frozen=True)
class TaskSpan:
    """One delivery of a task to a pod: received, and its end there (succeeded) or None."""

    task: str
    pod: str
    received: float
    succeeded: float | None


@dataclass(frozen=True)
class LegFigures:
    removed_busy: int
    removed_idle: int
    interrupted: int  # deliveries on a pod deleted before the task succeeded there
    redelivered: int  # task ids received more than once
    succeeded: int  # distinct task ids that succeeded somewhere
    tasks: int  # distinct task ids received
    termination: tuple[float, ...]  # per removed pod that is gone: deletion seen -> gone, seconds
    still_terminating: int  # removed pods not gone by the end of the leg
    to_spec: float | None  # policy applied -> Deployment spec.replicas at the target
    to_pods: float | None  # policy applied -> the last removed pod gone

    @property
    def termination_sum(self) -> float:
        return sum(self.termination)

    @property
    def termination_max(self) -> float:
        return max(self.termination, default=0.0)


def task_spans(events: Sequence[TaskEvent]) -> list[TaskSpan]:
    """Each delivery (a `received` line) with the `succeeded in` line of that task on that pod after it."""
    spans = []
    for e in sorted(events, key=lambda e: e.at):
        if e.kind != "received":
            continue
        ends = [
            s.at
            for s in events
            if s.kind == "succeeded" and s.pod == e.pod and s.task == e.task and s.at >= e.at
        ]
        spans.append(TaskSpan(e.task, e.pod, e.at, min(ends, default=None)))
    return spans


def busy_at(spans: Sequence[TaskSpan], pod: str, at: float) -> bool:
    """Whether `pod` had a task received and not finished at `at`."""
    return any(s.pod == pod and s.received <= at and (s.succeeded is None or s.succeeded > at) for s in spans)


def leg_figures(
    pods: Mapping[str, PodLife], events: Sequence[TaskEvent], applied: float, spec_at: float | None
) -> LegFigures:
    """The leg's figures from the pod watch's lives and the workers' task lines."""
    spans = task_spans(events)
    removed = [p for p in pods.values() if p.deleting is not None]
    busy = [p for p in removed if p.deleting is not None and busy_at(spans, p.name, p.deleting)]
    deleted = {p.name for p in removed}
    # The pod's log ends when it is gone: a delivery there with no "succeeded in" line did not finish.
    interrupted = [s for s in spans if s.pod in deleted and s.succeeded is None]
    received: dict[str, int] = {}
    for s in spans:
        received[s.task] = received.get(s.task, 0) + 1
    gone = [p for p in removed if p.gone is not None]
    termination = tuple(p.gone - p.deleting for p in gone if p.gone is not None and p.deleting is not None)
    last_gone = max((p.gone for p in gone if p.gone is not None), default=None)
    return LegFigures(
        removed_busy=len(busy),
        removed_idle=len(removed) - len(busy),
        interrupted=len(interrupted),
        redelivered=sum(1 for n in received.values() if n > 1),
        succeeded=len({s.task for s in spans if s.succeeded is not None}),
        tasks=len(received),
        termination=termination,
        still_terminating=len(removed) - len(gone),
        to_spec=None if spec_at is None else spec_at - applied,
        to_pods=None if last_gone is None or len(gone) < len(removed) else last_gone - applied,
    )


def combined(figures: Sequence[LegFigures]) -> LegFigures:
    """Several rounds of a leg as one: counts summed, every termination kept, the slowest time to the
    target (none when a round has none)."""

    def slowest(values: list[float | None]) -> float | None:
        return None if not values or None in values else max(v for v in values if v is not None)

    return LegFigures(
        removed_busy=sum(f.removed_busy for f in figures),
        removed_idle=sum(f.removed_idle for f in figures),
        interrupted=sum(f.interrupted for f in figures),
        redelivered=sum(f.redelivered for f in figures),
        succeeded=sum(f.succeeded for f in figures),
        tasks=sum(f.tasks for f in figures),
        termination=tuple(t for f in figures for t in f.termination),
        still_terminating=sum(f.still_terminating for f in figures),
        to_spec=slowest([f.to_spec for f in figures]),
        to_pods=slowest([f.to_pods for f in figures]),
    )


def leg_rows(records: Sequence[LegRecord]) -> list[tuple[str, LegFigures]]:
    """The table's rows: each round's (on-1, off-1...), then each setting's rounds combined (on, off)."""
    settings = list(dict.fromkeys(r.leg.split("-")[0] for r in records))
    return [(r.leg, r.figures) for r in records] + [
        (leg, combined([r.figures for r in records if r.leg.split("-")[0] == leg])) for leg in settings
    ]


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def table(rows: Sequence[tuple[str, LegFigures]]) -> str:
    """The printed table, one row per leg."""
    head = (
        f"{'leg':5} {'removed busy/idle':>17} {'interrupted':>11} {'redelivered':>11} {'succeeded':>9} "
        f"{'term. sum s':>11} {'term. max s':>11} {'-> spec 3 s':>11} {'-> 3 pods s':>11}"
    )
    lines = [head]
    for leg, f in rows:
        still = f" (+{f.still_terminating} not gone)" if f.still_terminating else ""
        lines.append(
            f"{leg:5} {f'{f.removed_busy}/{f.removed_idle}':>17} {f.interrupted:>11} {f.redelivered:>11} "
            f"{f'{f.succeeded}/{f.tasks}':>9} {f.termination_sum:>11.1f} {f.termination_max:>11.1f} "
            f"{seconds(f.to_spec):>11} {seconds(f.to_pods):>11}{still}"
        )
    return "\n".join(lines)


@dataclass
class LegRecord:
    leg: str
    applied: float
    sent: float
    spec_at: float | None
    pods: dict[str, PodLife]
    events: list[TaskEvent]
    operator_events: list[str]
    figures: LegFigures


def records_from_json(data: list[dict[str, Any]]) -> list[LegRecord]:
    """The records a run wrote (--json), to plot them again without the cluster (--replot)."""
    return [
        LegRecord(
            leg=r["leg"],
            applied=r["applied"],
            sent=r["sent"],
            spec_at=r["spec_at"],
            pods={k: PodLife(**v) for k, v in r["pods"].items()},
            events=[TaskEvent(**e) for e in r["events"]],
            operator_events=list(r["operator_events"]),
            figures=LegFigures(**{**r["figures"], "termination": tuple(r["figures"]["termination"])}),
        )
        for r in data
    ]


# --------------------------------------------------------------------------- the plot


def plot(records: Sequence[LegRecord], png: Path, grace: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(records), 1, figsize=(10, 2.2 + 0.5 * 6 * len(records)), sharex=True)
    axes_list = list(axes) if len(records) > 1 else [axes]
    for ax, rec in zip(axes_list, records, strict=True):
        t0 = rec.applied
        spans = task_spans(rec.events)
        names = sorted(rec.pods)
        seen = [s.succeeded for s in spans if s.succeeded is not None] + [s.received for s in spans]
        seen += [t for life in rec.pods.values() for t in (life.deleting, life.gone) if t is not None]
        end = max(seen, default=t0) - t0 + 5  # the leg's last event, not the time of plotting
        for y, pod in enumerate(names):
            life = rec.pods[pod]
            start = (life.ready or life.created) - t0
            stop = (life.gone - t0) if life.gone is not None else end
            ax.plot([start, stop], [y, y], color="0.75", lw=6, solid_capstyle="butt")
            if life.deleting is not None:
                ax.plot([life.deleting - t0, stop], [y, y], color="tab:orange", lw=6, solid_capstyle="butt")
                ax.plot([life.deleting - t0], [y], "kv", ms=7)
            for sp in (sp for sp in spans if sp.pod == pod):
                finish = sp.succeeded if sp.succeeded is not None else (life.gone or t0 + end)
                color = "tab:green" if sp.succeeded is not None else "tab:red"
                ax.plot([sp.received - t0, finish - t0], [y, y], color=color, lw=2.5)
                ax.text(sp.received - t0, y + 0.22, sp.task.rsplit("-", 1)[-1], fontsize=7)
        ax.axvline(0, color="k", ls="--", lw=1)
        if rec.spec_at is not None:
            ax.axvline(rec.spec_at - t0, color="tab:blue", ls=":", lw=1)
        f = rec.figures
        ax.set_title(
            f"protectBusyWorkers {rec.leg}: removed {f.removed_busy} busy / {f.removed_idle} idle, "
            f"{f.interrupted} interrupted, {f.redelivered} redelivered, "
            f"{f.termination_sum:.0f} s in termination",
            fontsize=10,
        )
        ax.set_yticks(range(len(names)), [n.rsplit("-", 1)[-1] for n in names], fontsize=8)
        ax.set_ylim(-0.7, len(names) - 0.3)
        ax.grid(axis="x", alpha=0.3)
    axes_list[-1].set_xlabel(
        "seconds from the policy's apply (dashed; dotted: replicas 3). grey: pod; orange: terminating "
        f"(grace {grace} s); green: task to 'succeeded'; red: task never finished there"
    )
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100, bbox_inches="tight")
    plt.close(fig)
