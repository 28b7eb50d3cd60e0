"""bench.scale's report: markdown tables of every size, the growth between sizes, a projection, the plot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import ROOT
from bench.scale.measure import SizeResult
from bench.scale.settings import Settings


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


def machine_cores(measured: dict[str, float]) -> str:
    cores = dict(measured)
    if not cores:
        return "-"
    total = cores.pop("all")
    return f"{total:.2f}; " + ", ".join(f"{name} {used:.2f}" for name, used in cores.items())


ROWS: tuple[tuple[str, Callable[[SizeResult], str]], ...] = (
    ("policies (namespaces)", lambda r: f"{r.policies:,} ({r.namespaces})"),
    ("time to evaluate all once (s)", lambda r: _fmt(r.all_once_s)),
    ("  first decision after start (s)", lambda r: _fmt(r.first_decision_s)),
    ("  CPU until all evaluated once (s)", lambda r: _fmt(r.startup_cpu_s)),
    ("CPU per policy cycle (ms)", lambda r: _fmt(r.cpu_per_policy_cycle_ms, 2)),
    ("CPU busy in steady state (cores)", lambda r: _fmt(r.cores_busy, 2)),
    (
        "  of it in the kernel; minor page faults per cycle",
        lambda r: f"{100 * r.system_cpu_share:.0f} %; {r.minor_faults_per_cycle:.0f}",
    ),
    (
        "RSS window start / end / peak (MB)",
        lambda r: f"{r.rss_start_mb:.0f} / {r.rss_end_mb:.0f} / {r.rss_peak_mb:.0f}",
    ),
    ("threads", lambda r: str(r.threads)),
    ("API writes/min idle (excl. lease)", lambda r: _fmt(r.writes_per_min)),
    ("  status patches/min", lambda r: _fmt(r.status_patches_per_min)),
    ("  scale writes (operator metric)", lambda r: _fmt(r.scale_writes, 0)),
    ("  lease renewals/min", lambda r: _fmt(r.lease_writes_per_min)),
    (
        "  apiserver scalingpolicies writes/min (cluster-wide)",
        lambda r: _fmt(r.apiserver_policy_writes_per_min),
    ),
    (
        "  metric gaps: exporter scrapes failed / targets held on an absent metric",
        lambda r: f"{r.failed_scrapes} / {r.missing_metric_decisions}",
    ),
    ("API reads per policy cycle", lambda r: _fmt(r.reads_per_cycle, 2)),
    ("Prometheus requests per policy cycle", lambda r: _fmt(r.prometheus_per_cycle, 2)),
    ("  Prometheus requests per second", lambda r: _fmt(r.prometheus_requests_per_s, 2)),
    (
        "  queries / policies per Prometheus request",
        lambda r: f"{r.queries_per_request:.1f} / {r.policies_per_request:.2f}",
    ),
    ("policy cycles in window (expected)", lambda r: f"{r.policy_cycles:,}"),
    (
        "missed cycles (gap > 2x interval)",
        lambda r: f"{r.missed} ({r.policies_missing} policies never in window)",
    ),
    ("  leadership lost in the window (lease not renewed)", lambda r: str(r.leadership_lost)),
    (
        "period p50 / p95 / max (s)",
        lambda r: f"{r.period_p50_s:.1f} / {r.period_p95_s:.1f} / {r.period_max_s:.1f}",
    ),
    ("cycle duration, mean (ms, reconcile_seconds)", lambda r: _fmt(r.reconcile_mean_ms)),
    ("cycles/s done / needed", lambda r: f"{r.cycles_per_s:.1f} / {r.policies / r.interval:.1f}"),
    (
        "cycles in flight (Little; a replica runs SCALEKEEPER_MAX_WORKERS at once)",
        lambda r: _fmt(r.cycles_in_flight, 2),
    ),
    ("  cycle start delay, mean (s, cycle_delay_seconds)", lambda r: _fmt(r.cycle_delay_mean_s, 2)),
    ("log lines/s", lambda r: _fmt(r.log_lines_per_s, 0)),
    (
        "machine: cores busy; the busiest programs' (bench.scale.machine)",
        lambda r: machine_cores(r.machine_cores),
    ),
    (
        "  the same before the operator started (the fleet alone)",
        lambda r: machine_cores(r.machine_idle_cores),
    ),
    ("setup: objects created in (s)", lambda r: _fmt(r.setup_seconds, 0)),
    ("settling: until every policy had 3 cycles (s)", lambda r: _fmt(r.settle_s, 0)),
    ("machine load average (1 min) after the window", lambda r: _fmt(r.load_average, 2)),
)

GROWTH: tuple[tuple[str, Callable[[SizeResult], float]], ...] = (
    ("time to evaluate all once", lambda r: r.all_once_s),
    ("CPU per policy cycle", lambda r: r.cpu_per_policy_cycle_ms),
    ("CPU busy (cores)", lambda r: r.cores_busy),
    ("RSS at window end", lambda r: r.rss_end_mb),
    ("API reads per policy cycle", lambda r: r.reads_per_cycle),
    ("writes/min idle", lambda r: r.writes_per_min),
)


def results_table(results: list[SizeResult], settings: Settings) -> list[str]:
    expected = [int(settings.window_cycles * r.policies) for r in results]
    head = (
        "| measure | "
        + " | ".join(
            f"{r.policies:,} policies, batching {r.batching}, {r.replicas} replica(s)"
            + (f", {r.code}" if len({x.code for x in results}) > 1 else "")
            for r in results
        )
        + " |"
    )
    out = [head, "|---|" + "---:|" * len(results)]
    for label, cell in ROWS:
        cells = [cell(r) for r in results]
        if label.startswith("policy cycles"):
            cells = [f"{c} ({e:,})" for c, e in zip(cells, expected, strict=True)]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def growth_table(results: list[SizeResult]) -> list[str]:
    small, large = results[0], results[-1]
    factor = large.policies / small.policies
    out = [
        f"| growth {small.policies:,} -> {large.policies:,} policies (x{factor:.1f}) | {small.policies:,} | "
        f"{large.policies:,} | ratio |",
        "|---|---:|---:|---:|",
    ]
    for label, get in GROWTH:
        a, b = get(small), get(large)
        ratio = f"x{b / a:.2f}" if a else "-"
        out.append(f"| {label} | {a:,.2f} | {b:,.2f} | {ratio} |")
    return out


def breakdown_table(results: list[SizeResult]) -> list[str]:
    kinds = sorted({k for r in results for k in r.reads_by_kind})
    out = [
        "| reads per policy cycle, by request | " + " | ".join(f"{r.policies:,}" for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    out += [
        f"| {k} | " + " | ".join(f"{r.reads_by_kind.get(k, 0):.3f}" for r in results) + " |" for k in kinds
    ]
    kinds = sorted({k for r in results for k in r.writes_by_kind})
    out += [
        "",
        "| writes per minute, by request | " + " | ".join(f"{r.policies:,}" for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    out += [
        f"| {k} | " + " | ".join(f"{r.writes_by_kind.get(k, 0):.1f}" for r in results) + " |" for k in kinds
    ]
    return out


def line_through(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float]:
    """Intercept and slope of the line through two points (flat when the x are equal)."""
    if x1 == x0:
        return y1, 0.0
    slope = (y1 - y0) / (x1 - x0)
    return y0 - slope * x0, slope


def projection(
    results: list[SizeResult], interval: int, pool: int, sizes: tuple[int, ...] = (1000, 3000)
) -> list[str]:
    """The issue's sizes from the smallest and largest measured ones, with the same number of namespaces.
    A cycle's CPU is taken as linear in the policies per namespace (each cycle lists its namespace's HPAs),
    RSS as linear in policies. Two noisy points on a shared machine: an order of magnitude, not a forecast."""
    small, large = results[0], results[-1]
    cpu0, cpu_slope = line_through(
        small.policies / small.namespaces,
        small.cpu_per_policy_cycle_ms,
        large.policies / large.namespaces,
        large.cpu_per_policy_cycle_ms,
    )
    rss0, rss_slope = line_through(small.policies, small.rss_end_mb, large.policies, large.rss_end_mb)
    out = [
        f"- fit: CPU per cycle = {cpu0:.1f} ms + {cpu_slope:.2f} ms x policies per namespace; "
        f"RSS = {rss0:.0f} MB + {rss_slope:.2f} MB x policies",
        f"- the thread pool ({pool} threads) keeps up only while a cycle takes at most {pool} x {interval} s "
        f"/ policies; measured at {large.policies:,}: {large.reconcile_mean_ms:.0f} ms",
    ]
    for n in sizes:
        per_ns = n / large.namespaces
        cpu_ms = cpu0 + cpu_slope * per_ns
        out.append(
            f"- {n:,} policies in {large.namespaces} namespaces every {interval} s: {cpu_ms:.0f} ms CPU per "
            f"cycle x {n / interval:.0f} cycles/s = {cpu_ms / 1000 * n / interval:.1f} cores of Python (one "
            f"GIL: above ~1 it cannot keep up); RSS ~{rss0 + rss_slope * n:,.0f} MB; cycles must take "
            f"<= {1000 * pool * interval / n:.0f} ms for the pool"
        )
    return out


def _single_beside(r: SizeResult, results: list[SizeResult]) -> SizeResult | None:
    """The single replica of the same code on the same fleet."""
    return next(
        (s for s in results if s.policies == r.policies and s.code == r.code and s.replicas == 1), None
    )


def replicas_table(results: list[SizeResult]) -> list[str]:
    """Each replica of every run with several, beside the single replica on the same fleet: the issue's aim
    is per-replica CPU and RSS at most 40 % of the single one's."""
    out: list[str] = []
    for r in results:
        if r.replicas < 2:
            continue
        single = _single_beside(r, results)
        out += [
            f"{r.policies:,} policies on {r.replicas} replicas"
            + (
                f" (beside 1 replica: {single.cores_busy:.2f} cores, {single.rss_end_mb:.0f} MB)"
                if single
                else ""
            ),
            "",
            "| replica | policies served | CPU busy (cores) | RSS end / peak (MB) | CPU, RSS vs 1 replica |",
            "|---|---:|---:|---:|---:|",
        ]
        for i, each in enumerate(r.per_replica):
            versus = (
                f"{each['cores_busy'] / single.cores_busy:.0%}, {each['rss_end_mb'] / single.rss_end_mb:.0%}"
                if single
                else "-"
            )
            out.append(
                f"| {i} | {each['served']:.0f} | {each['cores_busy']:.2f} | "
                f"{each['rss_end_mb']:.0f} / {each['rss_peak_mb']:.0f} | {versus} |"
            )
        out.append("")
    return out


def memory_model(results: list[SizeResult], idle_mb: float) -> list[str]:
    """RSS = idle + seen x (per policy seen) + served x (per policy served, beyond seen): from the idle
    replica, the single replica (every policy seen and served) and the replicas sharing the same fleet
    (every policy seen, a share served). Aims: <= 60 KB a policy served (seen included), <= 10 KB seen."""
    out: list[str] = []
    for r in results:
        single = _single_beside(r, results)
        if r.replicas < 2 or single is None or not r.per_replica:
            continue
        n = r.policies
        served = sum(e["served"] for e in r.per_replica) / len(r.per_replica)
        shared = sum(e["rss_end_mb"] for e in r.per_replica) / len(r.per_replica)
        if served >= n:
            continue
        extra = (single.rss_end_mb - shared) / (n - served)  # MB per policy served, beyond seen
        seen = (shared - idle_mb - served * extra) / n
        kb = 1024
        out.append(
            f"- {n:,} policies, 1 vs {r.replicas} replicas, idle replica {idle_mb:.0f} MB: "
            f"{(seen + extra) * kb:.0f} KB a policy served (aim 60), {seen * kb:.0f} KB a policy only seen "
            f"(aim 10); RSS ~ {idle_mb:.0f} MB + {seen * kb:.0f} KB x policies + {extra * kb:.0f} KB x served"
        )
    return out


def memory_fit(results: list[SizeResult], idle_mb: float) -> list[str]:
    """RSS = idle + serving + seen x policies + served x (per policy served, beyond seen), fitted (least
    squares) to every replica of every measure of one code. `serving` is what a replica pays once it
    serves anything (its cycle threads' working memory, what the allocator keeps of their churn), which
    the one-fleet model above counts as seen: it can only be told apart from the seen policies across
    fleets of two sizes or more."""
    out: list[str] = []
    for code in dict.fromkeys(r.code for r in results):
        points = [
            (float(r.policies), float(each["served"]), float(each["rss_end_mb"]) - idle_mb)
            for r in results
            if r.code == code
            for each in (r.per_replica or [{"served": r.policies, "rss_end_mb": r.rss_end_mb}])
        ]
        sizes = sorted({int(n) for n, _, _ in points})
        if len(sizes) < 2 or len(points) < 4:
            continue
        a = np.array([[1.0, n, served] for n, served, _ in points])
        b = np.array([rss for _, _, rss in points])
        (serving, seen, extra), *_ = np.linalg.lstsq(a, b, rcond=None)
        worst = float(np.max(np.abs(a @ np.array([serving, seen, extra]) - b)))
        kb = 1024
        out.append(
            f"- {code or 'this checkout'}, {len(points)} replicas over fleets of "
            f"{', '.join(f'{n:,}' for n in sizes)} policies, idle replica {idle_mb:.0f} MB: "
            f"{serving:.0f} MB once serving, {seen * kb:.1f} KB a policy only seen (aim 10), "
            f"{(seen + extra) * kb:.1f} KB a policy served (aim 60); worst residual {worst:.1f} MB"
        )
    return out


def print_report(results: list[SizeResult], settings: Settings, machine: str, idle_mb: float) -> None:
    # Growth and projection compare sizes: those measured in the first batching mode, on one replica count.
    same_mode = [
        r for r in results if r.batching == results[0].batching and r.replicas == results[0].replicas
    ]
    lines = [
        "## scalekeeper cost at scale",
        "",
        f"machine: {machine}",
        f"command: `{settings.command}`",
        f"policies ({settings.shape.name} fleet): {settings.shape.description} = "
        f"{len(settings.shape.targets)} target(s), {len(settings.shape.metrics)} Prometheus series each, "
        f"intervalSeconds {settings.interval}, every target at 0 replicas and every metric 0 (nothing to "
        "scale); "
        f"steady window {settings.window_cycles} intervals, one interval after every policy had 3 cycles; "
        f"operator env extra: {settings.operator_env or 'none'}",
        "",
        *results_table(results, settings),
        "",
    ]
    if len(same_mode) > 1:
        lines += [*growth_table(same_mode), ""]
    lines += [
        *breakdown_table(results),
        "",
        *replicas_table(results),
        "memory per policy (1 replica beside several on the same fleet, and a replica seeing none):",
        *(memory_model(results, idle_mb) or ["- (needs --replicas 1,N)"]),
        "fitted over fleets of several sizes (tells what a replica pays once it serves from what each policy "
        "seen costs):",
        *(memory_fit(results, idle_mb) or ["- (needs --sizes of two or more with --replicas 1,N)"]),
        "",
        "projection to the issue's sizes (two-point fit):",
        *projection(same_mode, settings.interval, settings.cycle_threads),
    ]
    for r in results:
        if r.events:
            lines += [
                "",
                f"Events posted on the policies at {r.policies:,} policies, since start (all writes):",
            ]
            lines += [f"- {n}: {reason}" for reason, n in r.events.items()]
        if r.status_causes:
            lines += ["", f"status patches in the window at {r.policies:,} policies, by field that changed:"]
            lines += [f"- {n}: {cause}" for cause, n in r.status_causes.items()]
        if r.problems:
            lines += ["", f"operator log warnings/errors at {r.policies:,} policies (count: message):"]
            lines += [f"- {n}: {msg}" for msg, n in r.problems.items()]
        if r.profile:
            lines += ["", f"### profile at {r.policies:,} policies", *r.profile]
    print("\n".join(lines), flush=True)


def plot(results: list[SizeResult], png: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    sizes = [r.policies for r in results]
    panels: tuple[tuple[str, Callable[[SizeResult], float]], ...] = (
        ("time to evaluate all once (s)", lambda r: r.all_once_s),
        ("CPU per policy cycle (ms)", lambda r: r.cpu_per_policy_cycle_ms),
        ("RSS at window end (MB)", lambda r: r.rss_end_mb),
        ("cycles per second done (needed: dashed)", lambda r: r.cycles_per_s),
    )
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (title, get) in zip(axes.flat, panels, strict=True):
        ax.plot(sizes, [get(r) for r in results], "o-")
        if title.startswith("cycles"):
            ax.plot(sizes, [r.policies / r.interval for r in results], "k--")
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.set_xlabel("policies")
        ax.grid(alpha=0.3)
    fig.suptitle("scalekeeper: cost at scale (one operator process)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    print(f"plot: {png.relative_to(ROOT)}")


def plot_prometheus(results: list[SizeResult], png: Path) -> None:
    """Prometheus requests per second and queries per request, by size, batching on beside off."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    sizes = sorted({r.policies for r in results})
    modes = list(dict.fromkeys(r.batching for r in results))
    width = 0.8 / len(modes)
    panels: tuple[tuple[str, Callable[[SizeResult], float]], ...] = (
        ("Prometheus requests per second", lambda r: r.prometheus_requests_per_s),
        ("queries per request", lambda r: r.queries_per_request),
    )
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (title, get) in zip(axes, panels, strict=True):
        for m, mode in enumerate(modes):
            xs = [i + (m - (len(modes) - 1) / 2) * width for i in range(len(sizes))]
            ys = [
                next((get(r) for r in results if r.policies == n and r.batching == mode), 0.0) for n in sizes
            ]
            bars = ax.bar(xs, ys, width, label=f"batching {mode}")
            ax.bar_label(bars, fmt="%.1f")
        ax.set_xticks(range(len(sizes)), [f"{n:,} policies" for n in sizes])
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
        ax.legend()
    fig.suptitle("scalekeeper: Prometheus reads at scale (one operator process)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    print(f"plot: {png.relative_to(ROOT)}")
