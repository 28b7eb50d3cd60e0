"""The live view: new Events as they come, and the table of the tiers under them."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from demo_watch import TIER_ORDER

# -------------------------------------------------------------------------------------------- the table

ANSI = {
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "red": "\x1b[31m",
    "cyan": "\x1b[36m",
    "reset": "\x1b[0m",
}


def paint(text: str, style: str, color: bool) -> str:
    return f"{ANSI[style]}{text}{ANSI['reset']}" if color else text


def _num(v: Any, fmt: str = "{:g}") -> str:
    return "-" if v is None else fmt.format(v)


def table_lines(sample: Mapping[str, Any], rel: float, phase: str, width: int, color: bool) -> list[str]:
    """The live view: a header with the load (and web's latency in locust's last interval), then one row per
    tier (replicas, desired, HPA floor for web, the limiting rule and the operator's one-line reason) and the
    Bottleneck condition, cut to ``width`` columns."""
    load = sample.get("load") or {}
    rps = load.get("rps")
    depth = load.get("video_depth")
    lat = sample.get("latency") or {}
    web = f"{_num(rps, '{:.1f}')} req/s"
    if lat:
        # locust's last 10 s interval: its requests' p95, and how many failed
        web += f" p95 {_num(lat.get('p95'), '{:.0f}')} ms ({lat.get('failures', 0)} failed)"
    head = f"+{rel:4.0f}s  web {web}  video queue {_num(depth, '{:.0f}')}  | {phase}"
    lines = [paint(head[:width], "bold", color)]
    cols = f"{'TIER':<15}{'READY/REPL':>11}{'DESIRED':>8}  {'HPA floor/want/max':<19}{'LIMITED BY':<16}REASON"
    lines.append(paint(cols[:width], "dim", color))
    tiers = sample.get("tiers") or {}
    names = [n for n in TIER_ORDER if n in tiers] + sorted(n for n in tiers if n not in TIER_ORDER)
    for name in names:
        t = tiers[name]
        repl = f"{_num(t.get('ready'))}/{_num(t.get('replicas'))}"
        hpa = ""
        if name == "web":
            hpa = f"{_num(t.get('floor'))}/{_num(t.get('hpaDesired'))}/{_num(t.get('max'))}"
        target = t.get("floor") if name == "web" else t.get("replicas")
        style = "green" if target == t.get("desired") and t.get("ready") == t.get("replicas") else "yellow"
        left = f"{name:<15}{repl:>11}{_num(t.get('desired')):>8}  {hpa:<19}{t.get('limitedBy') or '':<16}"
        line = (left + (t.get("reason") or ""))[:width]
        lines.append(paint(line[: len(left)], style, color) + line[len(left) :])
    if not names:
        lines.append("(no decision in the policy's status yet)")
    # The Bottleneck condition (absent: an operator from before it).
    if (bottleneck := sample.get("bottleneck")) is not None:
        saturated = bottleneck.get("status") == "True"
        text = f"{'BOTTLENECK':<15}{bottleneck.get('message') if saturated else 'none'}"
        lines.append(paint(text[:width], "red" if saturated else "dim", color))
    if err := sample.get("error"):
        lines.append(paint(f"(reading the cluster failed: {err})"[:width], "red", color))
    return lines


def event_line(ev: Mapping[str, Any], rel: float, width: int, color: bool) -> str:
    stamp = datetime.fromtimestamp(ev["t"], UTC).strftime("%H:%M:%S")
    rel = max(rel, 0.0)  # an Event of the policy's first cycle may carry the second before the view started
    if ev["source"] == "hpa":
        text = f"{stamp} +{rel:4.0f}s  HPA   {ev['reason']}: {ev['message']}"
        return paint(text[:width], "dim", color)
    text = f"{stamp} +{rel:4.0f}s  {ev['reason']:<8} {ev['message']}"[:width]
    style = (
        "red"
        if ev.get("type") == "Warning"
        else "green"
        if ev["reason"] in ("Scaled", "WouldScale")
        else "cyan"
    )
    return paint(text, style, color)


class LiveView:
    """Prints new Events as they come (they scroll) and redraws the table under them in place on a terminal;
    without one (a log, CI) prints the table when replicas, desired or the web floor change, or every 20 s."""

    def __init__(self, stream: Any = sys.stdout) -> None:
        self.out = stream
        self.tty = stream.isatty()
        self.color = self.tty and not os.environ.get("NO_COLOR")
        self._drawn = 0
        self._last_sig: Any = None
        self._last_print = 0.0

    def width(self) -> int:
        return max(40, shutil.get_terminal_size((140, 40)).columns - 1)

    def show(
        self,
        sample: Mapping[str, Any],
        events: Iterable[tuple[dict[str, Any], float]],
        rel: float,
        phase: str,
    ) -> None:
        w = self.width()
        ev_lines = [event_line(ev, erel, w, self.color) for ev, erel in events]
        table = table_lines(sample, rel, phase, w, self.color)
        if self.tty:
            buf = (f"\x1b[{self._drawn}F\x1b[J" if self._drawn else "") + "".join(
                line + "\n" for line in ev_lines + table
            )
            self.out.write(buf)
            self._drawn = len(table)
        else:
            sig = json.dumps(
                {
                    n: [t.get("replicas"), t.get("desired"), t.get("floor")]
                    for n, t in (sample.get("tiers") or {}).items()
                },
                sort_keys=True,
            )
            for line in ev_lines:
                self.out.write(line + "\n")
            if sig != self._last_sig or time.time() - self._last_print >= 20:
                self.out.write("\n".join(table) + "\n")
                self._last_sig, self._last_print = sig, time.time()
        self.out.flush()
