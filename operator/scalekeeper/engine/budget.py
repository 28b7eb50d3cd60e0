"""The connection budget: scale-ups of web and worker pods held back until the database's connections fit.

Pure, on the engine's own types: the tiers say which pool each target's pods draw from; the budget cuts the
largest worker scale-up first (the spec's order breaks ties), then lowers a raised web floor.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .rules import decide_plan
from .types import ConnectionUsage, TargetDecision, TargetPlan


@dataclass(frozen=True)
class Budget:
    max_connections: int
    web_pool_size: int
    worker_pool_size: int
    reserved: int


def level_cuts(growth: Sequence[int], units: int) -> list[int]:
    """The scale-ups left after taking `units` pods from them, one at a time from the largest, among equals
    from the last listed (so the spec's order doubles as priority), computed at once: counts reach int32,
    and a pod at a time would take that many steps."""
    units = max(0, min(units, sum(growth)))
    if units == 0:
        return list(growth)

    def taken(level: int) -> int:
        return sum(max(0, g - level) for g in growth)

    low, high = 0, max(growth)  # the lowest level whose cut takes no more than `units`
    while low < high:
        middle = (low + high) // 2
        if taken(middle) <= units:
            high = middle
        else:
            low = middle + 1
    kept = [min(g, low) for g in growth]
    rest = units - taken(low)  # fewer than the scale-ups at that level: one more pod from each, last first
    for i in reversed(range(len(kept))):
        if rest == 0:
            break
        if kept[i] == low:
            kept[i] -= 1
            rest -= 1
    return kept


def apply_budget(
    budget: Budget,
    web: str | None,
    workers: Sequence[str],
    decisions: dict[str, TargetDecision],
    plans: Mapping[str, TargetPlan],
    now: float,
    notes: list[str],
    web_running: int | None,
) -> tuple[ConnectionUsage, int | None]:
    """Cut scale-ups (workers first, then web) until the connections fit; mutates `decisions`.
    `web`: the target whose pods use the web pool (None: no web tier); `workers`: the worker targets, in
    the spec's order. Returns the usage and the largest web size the budget leaves room for."""
    worker_names = [name for name in workers if name in plans]
    sizes = {name: decisions[name].desired for name in worker_names}
    web_d = decisions.get(web) if web is not None else None
    web_floor = web_d.desired if web_d is not None and web_d.exists else 0
    web_current = web_d.current if web_d is not None and web_d.exists else 0
    # Web pods are max(what runs, the floor): the owned HPA may run more than the floor on
    # cpu/memory, and a raised floor lifts it. `running` says what runs when the operator
    # passes the floor as `replicas`.
    web_running = web_running if web_running is not None else web_current

    def web_pods(floor: int) -> int:
        return max(web_running, floor) if web_d is not None and web_d.exists else 0

    def total(web_pods: int) -> int:
        return (
            web_pods * budget.web_pool_size + sum(sizes.values()) * budget.worker_pool_size + budget.reserved
        )

    limit = budget.max_connections
    before = total(web_pods(web_floor))
    cut: dict[str, int] = {}
    if before > limit:
        if budget.worker_pool_size > 0:
            growth = [max(0, sizes[n] - decisions[n].current) for n in worker_names]
            excess = total(web_pods(web_floor)) - limit
            kept = level_cuts(growth, -(-excess // budget.worker_pool_size))
            for name, before_cut, after_cut in zip(worker_names, growth, kept, strict=True):
                if after_cut != before_cut:
                    sizes[name] = decisions[name].current + after_cut
                    cut[name] = sizes[name]
        if web is not None and web in plans and budget.web_pool_size > 0:
            # Lower a raised floor back toward its old value, never below it, and only while
            # that removes pods (a floor under what already runs costs nothing).
            excess = total(web_pods(web_floor)) - limit
            lowest = max(web_current, web_running)
            if excess > 0 and web_floor > lowest:
                web_floor = max(lowest, web_floor - -(-excess // budget.web_pool_size))
                cut[web] = web_floor
        after = total(web_pods(web_floor))
        summary = f"connections {before} > maxConnections {limit}"
        for name, value in cut.items():
            reason = f"{summary}: scale-up held to {value} to fit the connection budget"
            decisions[name] = decide_plan(plans[name], now, cap=value, cap_reason=reason)
        if after > limit:
            notes.append(
                f"connection budget exceeded even without scale-ups: {after} > maxConnections {limit}"
            )
    worker_pods = sum(sizes.values())
    web_max: int | None = None
    if budget.web_pool_size > 0:
        room = limit - budget.reserved - worker_pods * budget.worker_pool_size
        web_max = max(0, math.floor(room / budget.web_pool_size))
    usage = ConnectionUsage(web_pods(web_floor), worker_pods, total(web_pods(web_floor)), limit)
    return usage, web_max
