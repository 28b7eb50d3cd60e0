"""What a run shows: the table of figures per rule, and the plot of load, replicas and waits."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .waits import RuleResult
from .workload import Trace


def format_table(results: Sequence[RuleResult], target_wait: float) -> str:
    over = f"min>{target_wait:g}s"
    header = (
        f"{'rule':<12} {'wait p50':>9} {'wait p95':>9} {'wait max':>9} "
        f"{over:>9} {'replica-h':>10} {'scale events':>12} {'undrained':>9}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.name:<12} {r.percentile(50):>8.1f}s {r.percentile(95):>8.1f}s {r.percentile(100):>8.1f}s "
            f"{r.minutes_over_target:>9d} {r.replica_hours:>10.2f} {r.scale_events:>12d} {r.undrained:>9d}"
        )
    return "\n".join(lines)


def plot(trace: Trace, results: Sequence[RuleResult], horizon: float, target_wait: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = horizon / 60.0
    fig, (ax_load, ax_rep, ax_wait) = plt.subplots(3, 1, figsize=(11, 9), sharex=True)
    xs: list[float] = []
    ys: list[float] = []
    for start, count, length in zip(trace.starts, trace.counts, trace.lengths, strict=True):
        xs += [start / 60.0, (start + length) / 60.0]
        ys += [count / length, count / length]
    ax_load.plot(xs, ys, color="black", linewidth=1.2)
    ax_load.set_ylabel("arrivals (tasks/s)")
    ax_load.set_title("load, replicas and task waiting time per rule")
    # Wider lines underneath, so a rule hidden behind another still shows at its edges.
    styles = {
        "scalekeeper": ("tab:blue", 1.4, "-"),
        "hpa-default": ("tab:orange", 2.6, "-"),
        "keda-style": ("tab:green", 3.8, "-"),
        "oracle": ("black", 1.0, "--"),
    }
    for r in reversed(results):
        color, width, dash = styles.get(r.name, ("gray", 1.5, "-"))
        ts = [t / 60.0 for t, _ in r.replicas] + [minutes]
        ns = [n for _, n in r.replicas] + [r.replicas[-1][1]]
        ax_rep.step(
            ts, ns, where="post", label=r.name, color=color, linewidth=width, linestyle=dash, alpha=0.85
        )
        mins = [i + 0.5 for i, v in enumerate(r.p95_by_minute) if v is not None]
        vals = [v for v in r.p95_by_minute if v is not None]
        ax_wait.plot(mins, vals, marker=".", markersize=3, linewidth=width / 2, label=r.name, color=color)
    ax_rep.set_ylabel("desired replicas")
    ax_rep.legend(loc="upper right")
    ax_wait.axhline(target_wait, color="red", linestyle="--", linewidth=1, label="target wait")
    ax_wait.set_ylabel("p95 wait of tasks started (s)")
    ax_wait.set_xlabel("minutes")
    ax_wait.legend(loc="upper right")
    for ax in (ax_load, ax_rep, ax_wait):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, minutes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
