"""out/demo.png: the load, web's latency (locust's), web and the read replicas, the workers, with every Scaled
and Holding Event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from demo_watch import TIER_ORDER
from demo_watch.load import offered_rate
from demo_watch.sampling import parse_scaled, tier_of_holding

TIER_COLORS = {
    "web": "#1f77b4",
    "worker/video": "#d62728",
    "worker/emails": "#9467bd",
    "worker/reports": "#8c564b",
    "readReplicas": "#2ca02c",
}


# ---------------------------------------------------------------------------------------------- the plot


def step_series(samples: Sequence[Mapping[str, Any]], tier: str, key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for s in samples:
        v = ((s.get("tiers") or {}).get(tier) or {}).get(key)
        if v is not None:
            xs.append(float(s["rel"]))
            ys.append(float(v))
    return xs, ys


def _value_at(samples: Sequence[Mapping[str, Any]], tier: str, rel: float) -> float | None:
    x, y = step_series(samples, tier, "replicas")
    return next((v for xv, v in zip(reversed(x), reversed(y), strict=True) if xv <= rel), None)


def latency_steps(latency: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """One of locust's percentiles as steps over each interval's span (its start, and its value again at its
    end); intervals in which no request completed leave a gap."""
    xs: list[float] = []
    ys: list[float] = []
    for i in latency:
        if i.get(key) is None:
            xs.append(float(i["rel"]))
            ys.append(float("nan"))
            continue
        xs += [float(i["rel"]), float(i["rel"]) + float(i["seconds"])]
        ys += [float(i[key]), float(i[key])]
    return xs, ys


def plot(record: Mapping[str, Any], path: Path) -> None:
    """Four panels sharing the time axis: the load (requests/s served and offered, video queue depth); web's
    latency per 10 s interval as locust measured it (p50, p95, failed requests); web replicas, its HPA floor
    and the read replicas; the worker Deployments. Every `Scaled` Event is marked on
    its tier's line (a triangle up or down) and every `Holding` Event with a cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    samples = record.get("samples") or []
    start = float(record["start"])
    events = record.get("events") or []
    load = record.get("load") or {}
    end_rel = max([float(s["rel"]) for s in samples] or [1.0])

    fig, (ax_load, ax_lat, ax_web, ax_wrk) = plt.subplots(
        4, 1, figsize=(12, 13), sharex=True, gridspec_kw={"height_ratios": [5, 3, 4, 4]}
    )
    fig.suptitle(record.get("title") or "scalekeeper demo", fontsize=11)

    # Load
    rps = [(t - start, v) for t, v in load.get("rps") or []]
    if rps:
        ax_load.plot(
            [x for x, _ in rps],
            [v for _, v in rps],
            color=TIER_COLORS["web"],
            linewidth=1.6,
            label="web requests/s served (Prometheus, rate over 10 s)",
        )
    xs = [x / 2 for x in range(int(end_rel * 2) + 1)]
    ax_load.plot(
        xs,
        [offered_rate(x, float(record.get("web_shift") or 0.0)) for x in xs],
        color=TIER_COLORS["web"],
        linestyle=":",
        linewidth=1,
        label="web requests/s offered (locust's shape)",
    )
    ax_load.set_ylabel("requests / s")
    ax_q = ax_load.twinx()
    depth = [(t - start, v) for t, v in load.get("video_depth") or []]
    if depth:
        ax_q.plot(
            [x for x, _ in depth],
            [v for _, v in depth],
            color=TIER_COLORS["worker/video"],
            linewidth=1.6,
            label="video queue: waiting + in flight (right axis)",
        )
    ax_q.set_ylabel("video tasks")
    ax_q.set_ylim(bottom=0)
    ax_load.set_ylim(bottom=0)
    h1, l1 = ax_load.get_legend_handles_labels()
    h2, l2 = ax_q.get_legend_handles_labels()
    ax_load.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    if not rps and not depth:
        ax_load.text(0.5, 0.5, "no load series from Prometheus", transform=ax_load.transAxes, ha="center")
    ax_load.grid(alpha=0.3)
    ax_load.set_title("load", fontsize=9, loc="left")

    # Latency, from locust's intervals.
    latency = record.get("latency") or []
    for key, style in (("p50", ":"), ("p95", "-")):
        x, y = latency_steps(latency, key)
        if x:
            ax_lat.plot(x, y, color=TIER_COLORS["web"], linestyle=style, linewidth=1.6, label=f"web {key}")
    ax_lat.set_ylabel("ms")
    ax_lat.set_ylim(bottom=0)
    ax_fail = ax_lat.twinx()
    failed = [i for i in latency if i.get("failures")]
    if failed:
        ax_fail.bar(
            [float(i["rel"]) + float(i["seconds"]) / 2 for i in failed],
            [int(i["failures"]) for i in failed],
            width=[0.8 * float(i["seconds"]) for i in failed],
            color="#d62728",
            alpha=0.5,
            label="failed requests (right axis)",
        )
        ax_fail.set_ylabel("failed")
        ax_fail.set_ylim(bottom=0, top=max(int(i["failures"]) for i in failed) * 1.2)
    else:
        ax_fail.set_yticks([])
    h1, l1 = ax_lat.get_legend_handles_labels()
    h2, l2 = ax_fail.get_legend_handles_labels()
    ax_lat.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    if not latency:
        ax_lat.text(0.5, 0.5, "no intervals from locust", transform=ax_lat.transAxes, ha="center")
    elif not failed:
        ax_lat.text(0.99, 0.04, "no request failed", transform=ax_lat.transAxes, ha="right", fontsize=8)
    ax_lat.grid(alpha=0.3)
    ax_lat.set_title(
        "web latency per 10 s interval (locust, over the requests completed in it)", fontsize=9, loc="left"
    )

    # Replicas: web and the read replicas, then the workers.
    panels = {
        "web": ax_web,
        "readReplicas": ax_web,
        "worker/video": ax_wrk,
        "worker/emails": ax_wrk,
        "worker/reports": ax_wrk,
    }
    tops = {ax_web: 1.0, ax_wrk: 1.0}
    for tier in TIER_ORDER:
        x, y = step_series(samples, tier, "replicas")
        if not x:
            continue
        ax = panels[tier]
        tops[ax] = max(tops[ax], *y)
        thin = tier in ("worker/emails", "worker/reports")
        ax.step(
            x,
            y,
            where="post",
            color=TIER_COLORS[tier],
            linewidth=1.2 if thin else 2.0,
            alpha=0.7 if thin else 1.0,
            label=f"{tier} replicas" if tier != "readReplicas" else "db-replica (read replicas)",
        )
        if tier == "web":
            fx, fy = step_series(samples, "web", "floor")
            if fx:
                tops[ax] = max(tops[ax], *fy)
                ax.step(
                    fx,
                    fy,
                    where="post",
                    color="black",
                    linestyle="--",
                    linewidth=1.0,
                    label="web HPA floor (minReplicas, from the request rate)",
                )
    for ev in events:
        if ev.get("source") != "policy":
            continue
        rel = float(ev["t"]) - start
        parsed = parse_scaled(ev.get("message", ""))
        if parsed:
            tier, old, new = parsed
            if tier not in panels:
                continue
            panels[tier].plot(
                [rel],
                [new],
                marker="^" if new > old else "v",
                color=TIER_COLORS[tier],
                markersize=8,
                markeredgecolor="black",
                markeredgewidth=0.6,
                linestyle="none",
            )
        elif ev.get("reason") == "Holding":
            tier = tier_of_holding(ev.get("message", "")) or ""
            if tier not in panels:
                continue
            yv = _value_at(samples, tier, rel)
            panels[tier].plot(
                [rel],
                [yv if yv is not None else 0],
                marker="x",
                color=TIER_COLORS[tier],
                markersize=8,
                markeredgewidth=1.5,
                linestyle="none",
            )
    marks = [
        Line2D([], [], marker="^", color="gray", markeredgecolor="black", linestyle="none", markersize=8),
        Line2D([], [], marker="v", color="gray", markeredgecolor="black", linestyle="none", markersize=8),
        Line2D([], [], marker="x", color="gray", linestyle="none", markersize=8, markeredgewidth=1.5),
    ]
    mark_labels = ["Scaled event (up)", "Scaled event (down)", "Holding event"]
    for ax, title in ((ax_web, "web and read replicas"), (ax_wrk, "Celery workers")):
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles + marks, labels + mark_labels, loc="upper left", fontsize=8, ncol=2)
        ax.set_ylabel("replicas")
        ax.set_ylim(-0.3, tops[ax] + 2.5)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.set_title(title, fontsize=9, loc="left")
    ax_wrk.set_xlabel("seconds since the policy was applied")
    ax_wrk.set_xlim(0, end_rel)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
