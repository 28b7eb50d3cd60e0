"""Why status patches were sent: each patch in the window against the same policy's previous one, from the
operator's status trace (BENCH_STATUS_TRACE)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any


def changed_fields(old: Any, new: Any, prefix: str) -> list[str]:
    """Dotted paths where two status bodies differ; conditions and targets are matched by type or name."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            f
            for k in sorted(old.keys() | new.keys())
            for f in changed_fields(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else k)
        ]
    if isinstance(old, list) and isinstance(new, list) and all(isinstance(x, dict) for x in old + new):
        keyed_old = {x.get("type") or x.get("name"): x for x in old}
        keyed_new = {x.get("type") or x.get("name"): x for x in new}
        if None not in keyed_old and None not in keyed_new:
            return [
                f
                for k in sorted(keyed_old.keys() | keyed_new.keys())
                for f in changed_fields(keyed_old.get(k), keyed_new.get(k), f"{prefix}[{k}]")
            ]
    return [] if old == new else [prefix]


def status_write_causes(trace: Path, start: float, end: float) -> dict[str, int]:
    """For each status patch inside the window, what differs from the same policy's previous patch."""
    if not trace.exists():
        return {}
    previous: dict[str, Any] = {}
    causes: Counter[str] = Counter()
    for line in trace.read_text().splitlines():
        entry = json.loads(line)
        path, body = entry["path"], entry["body"]
        if start < entry["at"] <= end:
            if path in previous:
                causes.update(set(changed_fields(previous[path], body, "")) or {"(identical body)"})
            else:
                causes["(first status patch of this process)"] += 1
        previous[path] = body
    return dict(causes.most_common(12))
