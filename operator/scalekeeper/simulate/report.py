"""What a run shows: a table of figures per rule with a legend, and a plot of load, replicas and waits."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path

from .results import REVERSAL_SECONDS, RuleSummary
from .trace import Interval

PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def format_table(summaries: Sequence[RuleSummary], target_wait: float) -> str:
    over = f"min>{target_wait:g}s"
    header = (
        f"{'rule':<12} {'wait p50':>9} {'wait p95':>9} {'wait max':>9} "
        f"{over:>9} {'replica-h':>10} {'scale events':>12} {'reversals':>9} {'undrained':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in summaries:
        lines.append(
            f"{r.name:<12} {r.wait_p50:>8.1f}s {r.wait_p95:>8.1f}s {r.wait_max:>8.1f}s "
            f"{r.minutes_over_target:>9d} {r.replica_hours:>10.2f} {r.scale_events:>12d} "
            f"{r.reversals:>9d} {r.undrained:>9d}"
        )
    return "\n".join(lines)


def legend(summaries: Sequence[RuleSummary], target_wait: float, more: Sequence[tuple[str, str]] = ()) -> str:
    """What the columns mean (and `more` (name, meaning) lines); every time in them is simulated."""
    minutes = summaries[0].minutes_with_arrivals if summaries else 0
    entries = [
        (
            "wait p50/p95/max",
            "from a task's arrival to its start on a worker, nearest rank over every task; a task "
            "not started by the end of the run waits until then",
        ),
        (
            f"min>{target_wait:g}s",
            f"simulated minutes whose arriving tasks had a p95 wait over {target_wait:g} s "
            f"(--target-wait), of the {minutes:,} minutes with arrivals; counted by arrival minute, "
            "as bench/quality.py counts",
        ),
        (
            "replica-h",
            "worker pod-hours, from pod creation (start delay included) to the end of its warm shutdown",
        ),
        ("scale events", "changes of the desired replicas"),
        ("reversals", f"scale events undoing the previous one within {REVERSAL_SECONDS:g} s (flapping)"),
        ("undrained", "tasks not started by the end of the run (the trace, then --tail)"),
        *more,
    ]
    width = max(len(name) for name, _ in entries) + 4
    lines = ["Times are simulated time (the trace's clock), not how long the run took."]
    for name, text in entries:
        lines += textwrap.wrap(
            text, 100, initial_indent=f"  {name:<{width - 2}}", subsequent_indent=" " * width
        )
    return "\n".join(lines)


class LoadCurve:
    """The trace's arrival rate for the plot, in at most `max_bins` equal bins: a bin doubles in width
    (two merged into one) whenever the trace outgrows them, so a trace of any length fits."""

    def __init__(self, width: float = 1.0, max_bins: int = 4096) -> None:
        self.width = width
        self.max_bins = max_bins
        self.arrivals: list[float] = []  # per bin

    def add(self, interval: Interval) -> None:
        start, count, length = interval
        end = start + length
        while end > self.width * self.max_bins:
            self._merge()
        if count <= 0:
            return
        rate = count / length
        first, last = int(start // self.width), min(int(end // self.width), self.max_bins - 1)
        if len(self.arrivals) <= last:
            self.arrivals.extend([0.0] * (last + 1 - len(self.arrivals)))
        for b in range(first, last + 1):
            overlap = min(end, (b + 1) * self.width) - max(start, b * self.width)
            if overlap > 0:
                self.arrivals[b] += rate * overlap

    def _merge(self) -> None:
        a = self.arrivals
        self.arrivals = [sum(a[i : i + 2]) for i in range(0, len(a), 2)]
        self.width *= 2

    def steps(self) -> tuple[list[float], list[float]]:
        """(seconds, tasks/s) outlining each bin."""
        xs: list[float] = []
        ys: list[float] = []
        for b, n in enumerate(self.arrivals):
            xs += [b * self.width, (b + 1) * self.width]
            ys += [n / self.width, n / self.width]
        return xs, ys


def load_curve(intervals: Iterable[Interval]) -> LoadCurve:
    curve = LoadCurve()
    for interval in intervals:
        curve.add(interval)
    return curve


def plot(
    load: LoadCurve, summaries: Sequence[RuleSummary], horizon: float, target_wait: float, path: Path
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = horizon / 60.0
    fig, (ax_load, ax_rep, ax_wait) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    xs, ys = load.steps()
    ax_load.plot([x / 60.0 for x in xs], ys, color="black", linewidth=1.2)
    ax_load.set_ylabel("arrivals (tasks/s)")
    ax_load.set_title("load, replicas and task waiting time per rule")
    # Wider lines underneath, so a rule hidden behind another still shows at its edges.
    styles = {
        "scalekeeper": ("tab:blue", 1.4, "-"),
        "hpa-default": ("tab:orange", 2.6, "-"),
        "keda-style": ("tab:green", 3.8, "-"),
        "oracle": ("black", 1.0, "--"),
    }
    for r in reversed(summaries):
        color, width, dash = styles.get(r.name, ("gray", 1.5, "-"))
        ts = [t / 60.0 for t, _ in r.replicas] + [minutes]
        ns = [n for _, n in r.replicas] + [r.replicas[-1][1]]
        ax_rep.step(
            ts, ns, where="post", label=r.name, color=color, linewidth=width, linestyle=dash, alpha=0.85
        )
        mins = [m + 0.5 for m, _ in r.p95_by_minute]
        vals = [v for _, v in r.p95_by_minute]
        ax_wait.plot(mins, vals, marker=".", markersize=3, linewidth=width / 2, label=r.name, color=color)
    ax_rep.set_ylabel("desired replicas")
    ax_rep.legend(loc="upper right")
    ax_wait.axhline(target_wait, color="red", linestyle="--", linewidth=1, label="target wait")
    ax_wait.set_ylabel("p95 wait of the tasks\narriving in the minute (s)")
    ax_wait.set_xlabel("simulated minutes")
    ax_wait.legend(loc="upper right")
    for ax in (ax_load, ax_rep, ax_wait):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, minutes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
