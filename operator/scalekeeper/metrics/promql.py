"""Every piece of PromQL the operator writes: escaping, filling in a queue's query templates (the presets'
are in presets.py), forecast windows and the batch that folds a policy's queries into one request. No I/O;
the model and the tiers call it."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

APP_PLACEHOLDER = "<app>"
QUEUE_PLACEHOLDER = "<queue>"
_PLACEHOLDER = re.compile(f"{re.escape(APP_PLACEHOLDER)}|{re.escape(QUEUE_PLACEHOLDER)}")
DEFAULT_RATE_WINDOW_SECONDS = 60.0  # the presets' rate(...[1m]) (metrics/presets.py)

# Labels the batch tags each part with, so one answer can be taken apart again.
KEY_LABEL = "sk_key"
PART_LABEL = "sk_part"

# A PromQL range or subquery selector, `[1m]`, `[1m30s]`, `[5m:30s]`: its range, in duration units.
_RANGE = re.compile(r"\[((?:\d+(?:ms|[smhdwy]))+)(?::[^\]]*)?\]")
_DURATION_PART = re.compile(r"(\d+)(ms|[smhdwy])")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def string_escape(value: str) -> str:
    """Text for use inside a double-quoted PromQL string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fill_template(template: str, *, app: str, queue: str) -> str:
    """A query template with `<app>` and `<queue>` replaced by the app's and the queue's names, each escaped
    for a PromQL string. One pass: a name that holds a placeholder's text is not filled in again."""
    values = {APP_PLACEHOLDER: string_escape(app), QUEUE_PLACEHOLDER: string_escape(queue)}
    return _PLACEHOLDER.sub(lambda m: values[m.group()], template)


def range_seconds(query: str) -> float | None:
    """The longest range selector of a PromQL query, in seconds (None without one)."""
    ranges = [
        sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(m.group(1)))
        for m in _RANGE.finditer(query)
    ]
    return float(max(ranges)) if ranges else None


# The quantiles, and the share of the runtime distribution each stands for, from which `runtime_scv` takes the
# runtime's first two moments: the deciles' midpoints, and the top decile in finer steps, where a
# heavy tail's second moment lives. On the exporter's buckets this reads a lognormal runtime (sigma 1) as
# 1.9 where the truth is 1.7, an exponential one as 1.2 instead of 1, and misses much of a heavier tail
# (sigma 1.5: 4.3 instead of 8.5): Prometheus interpolates linearly inside a bucket and cannot see past
# the last finite one.
_MOMENT_QUANTILES = (
    *((round(0.05 + 0.1 * i, 3), 0.1) for i in range(9)),
    (0.925, 0.05),
    (0.975, 0.04),
    (0.995, 0.01),
)


def runtime_mean(histogram: str, matchers: str, window: str = "5m") -> str:
    """A runtime histogram's mean observation over `window`, from its `_sum` and `_count` series matching
    `matchers` (`app="<app>",queue="<queue>"`): NaN when none finished in the window."""
    return (
        f"sum(rate({histogram}_sum{{{matchers}}}[{window}])) / "
        f"sum(rate({histogram}_count{{{matchers}}}[{window}]))"
    )


def runtime_scv(buckets: str, window: str = "5m") -> str:
    """The squared coefficient of variation (variance / mean^2) of a runtime histogram's observations
    over `window`, from its `_bucket` series `buckets`: NaN when none finished in the window."""
    rates = f"sum by (le) (rate({buckets}[{window}]))"
    quantiles = [(f"histogram_quantile({q}, {rates})", w) for q, w in _MOMENT_QUANTILES]
    first = " + ".join(f"{w} * {q}" for q, w in quantiles)
    second = " + ".join(f"{w} * {q} ^ 2" for q, w in quantiles)
    return f"clamp_min(({second}) / ({first}) ^ 2 - 1, 0)"


def backlog(waiting: str, in_flight: str) -> str:
    """Waiting plus in-flight tasks as one series (no workers running: no in-flight series, counted 0)."""
    return f"(sum({waiting}) + (sum({in_flight}) or vector(0)))"


def forecast_windows(query: str, lead_seconds: int, season_seconds: int) -> tuple[str, str, str]:
    """The forecast's readings of `query` (an instant vector; its series are summed): the peak over the
    lead window a season ago, the mean over the lead window before that, and the mean over the last
    lead window (see engine/forecast.py)."""
    window = f"[{lead_seconds}s:{max(1, lead_seconds // 30)}s]"
    total = f"sum({query})"
    return (
        f"max_over_time({total}{window} offset {season_seconds - lead_seconds}s)",
        f"avg_over_time({total}{window} offset {season_seconds}s)",
        f"avg_over_time({total}{window})",
    )


# A series selector (`name`, `name{...}`, `{...}`, with `offset` and `@` modifiers, in parentheses or not):
# only of one does `timestamp()` answer the time of the newest raw sample; of any other expression it
# answers the evaluation time, which a reading without its time is stamped with anyway
# (metrics/prometheus.py).
_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`'
_MATCHERS = rf"\{{(?:[^{{}}\"'`]|{_STRING})*\}}"
_MODIFIER = r"(?i:offset)\s+-?[0-9][0-9a-z.]*|@\s*(?:-?[0-9][0-9.e+-]*|start\(\)|end\(\))"
_SELECTOR = re.compile(rf"(?:[a-zA-Z_:][a-zA-Z0-9_:]*\s*(?:{_MATCHERS})?|{_MATCHERS})(?:\s*(?:{_MODIFIER}))*")


def stamped(query: str) -> bool:
    """Whether the batch asks for the time of the query's newest sample: only a selector has one."""
    q = query.strip()
    while q.startswith("(") and q.endswith(")"):
        q = q[1:-1].strip()
    return _SELECTOR.fullmatch(q) is not None


def batch_parts(key: Any, query: str) -> list[str]:
    """One query's parts of a batch: its sum tagged with its key (`str(key)`) and, for a selector,
    the time of its newest raw sample."""
    k = string_escape(str(key))
    parts = [f'label_replace(sum({query}), "{KEY_LABEL}", "{k}", "", "")']
    if stamped(query):
        parts.append(
            f'label_replace(label_replace(max(timestamp({query})), "{KEY_LABEL}", "{k}", "", ""), '
            f'"{PART_LABEL}", "ts", "", "")'
        )
    return parts


def batch(queries: Mapping[Any, str]) -> str:
    """Every query's parts (`batch_parts`) joined with `or` (which keeps them all, as their labels differ)."""
    return joined([part for key, query in queries.items() for part in batch_parts(key, query)])


def joined(parts: Sequence[str]) -> str:
    """The parts joined with `or` as a balanced tree. `a or b or c ...` is evaluated left-deep, each `or`
    matching the labels of everything joined before it: n^2 / 2 matchings, and at 400 parts 55 ms of
    Prometheus's evaluation where the balanced tree takes 20 ms (bench.scale's series, Prometheus 3.5)."""
    if len(parts) <= 1:
        return "".join(parts)
    half = len(parts) // 2
    left, right = joined(parts[:half]), joined(parts[half:])
    # `or` is left-associative: only a right side of several parts needs its parentheses.
    return f"{left} or ({right})" if len(parts) - half > 1 else f"{left} or {right}"


@functools.cache
def grouped(parts: int) -> int:
    """How many pairs of parentheses `joined` writes for `parts` parts."""
    if parts <= 1:
        return 0
    half = parts // 2
    return grouped(half) + grouped(parts - half) + (parts - half > 1)
