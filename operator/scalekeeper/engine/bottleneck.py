"""Bottlenecks, pure: which tiers are saturated this cycle (signals), and episodes that start once a tier has
stayed saturated for a while and end once it has stayed clear for longer (no Event per chattering cycle).

`ScalingLimited` says a rule bounded this cycle's decision; a bottleneck says a tier has been saturated for
`HOLD_CYCLES` cycles: more replicas, a higher maxReplicas or more database connections are needed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from .types import ConnectionUsage, LimitedBy, TargetDecision

# An episode starts after this many cycles of saturation without a break, and ends after twice as many
# cycles clear: at the default intervalSeconds of 5, 30 s and 60 s. Counted in cycles, since a policy
# decides at its interval: a shorter hold than a few decisions would be one noisy sample.
HOLD_CYCLES = 6
CLEAR_CYCLES = 12
# Planned connections above this share of maxConnections leave no room for the next scale-up.
CONNECTIONS_THRESHOLD = 0.9
# The seed's thresholds of CPU and memory use against the containers' limits.
CPU_THRESHOLD = 0.8
MEMORY_THRESHOLD = 0.85
# Load counts as grown at maxReplicas once it is this much above what it was when the tier got there (the
# HPA's default tolerance): a backlog that only wobbles is not growing.
GROWTH_MARGIN = 0.1
# The pseudo-tier a connection-budget bottleneck is named under: the database's limit, not one workload.
CONNECTIONS = "connections"


@dataclass(frozen=True)
class Signal:
    """One reason a tier is saturated this cycle: a CamelCase reason and a line saying it."""

    reason: str
    message: str


@dataclass(frozen=True)
class Growth:
    """A tier whose load growing while it is at maxReplicas is a bottleneck, even while that load still fits
    (read replicas, worker queues): the decision's metric to watch, what to call it, and the bound."""

    metric: str
    what: str
    reason: str
    max_replicas: int


def tier_signals(
    d: TargetDecision, growth: Growth | None, baseline: float | None
) -> tuple[tuple[Signal, ...], float | None]:
    """The signals holding for one target this cycle, and the growth baseline to keep: the load when the tier
    reached maxReplicas (None while it is below). Growth counts only while the load needs every one of the
    maxReplicas: a fixed-size tier (min = max) with a few tasks more than an idle start is not saturated."""
    found: list[Signal] = []
    if not d.exists:
        return (), None
    if d.limited_by is LimitedBy.MAX and d.raw is not None and d.raw > d.desired:
        found.append(Signal("AtMaxReplicas", f"at maxReplicas {d.desired} while its demand needs {d.raw}"))
    if d.limited_by is LimitedBy.CONNECTION_BUDGET:
        wanted = "" if d.raw is None else f" (it needs {d.raw})"
        found.append(
            Signal("ConnectionBudget", f"the connection budget holds its scale-up at {d.desired}{wanted}")
        )
    if growth is not None:
        value = d.metrics.get(growth.metric)
        at_max = d.current >= growth.max_replicas and d.desired >= growth.max_replicas
        if not at_max:
            baseline = None
        elif value is not None:
            if baseline is None:
                baseline = value
            elif value > baseline * (1 + GROWTH_MARGIN) and (d.raw or 0) >= growth.max_replicas:
                found.append(
                    Signal(
                        growth.reason,
                        f"at maxReplicas {growth.max_replicas} while its {growth.what} grew from "
                        f"{baseline:g} to {value:g}",
                    )
                )
    return tuple(found), baseline


def connection_signals(usage: ConnectionUsage | None) -> tuple[Signal, ...]:
    """The connection budget nearly used up by the sizes decided (replicas x pool + reserved)."""
    if usage is None or usage.max_connections <= 0:
        return ()
    share = usage.total / usage.max_connections
    if share <= CONNECTIONS_THRESHOLD:
        return ()
    return (
        Signal(
            "ConnectionsNearLimit",
            f"{usage.total} connections planned of maxConnections {usage.max_connections} ({share:.0%} > "
            f"{CONNECTIONS_THRESHOLD:.0%})",
        ),
    )


def resource_signals(cpu: float | None, memory: float | None) -> tuple[Signal, ...]:
    """CPU and memory use as shares of the containers' limits (None: not known, not evaluated)."""
    found = []
    if cpu is not None and cpu > CPU_THRESHOLD:
        found.append(Signal("CpuHigh", f"CPU at {cpu:.0%} of its limits (> {CPU_THRESHOLD:.0%})"))
    if memory is not None and memory > MEMORY_THRESHOLD:
        found.append(Signal("MemoryHigh", f"memory at {memory:.0%} of its limits (> {MEMORY_THRESHOLD:.0%})"))
    return tuple(found)


@dataclass(frozen=True)
class Windows:
    """How long a signal must hold before an episode starts, and stay clear before it ends (seconds)."""

    hold_seconds: float
    clear_seconds: float

    @staticmethod
    def for_interval(interval_seconds: float) -> Windows:
        return Windows(HOLD_CYCLES * interval_seconds, CLEAR_CYCLES * interval_seconds)


@dataclass(frozen=True)
class Episode:
    """One tier's bottleneck state between cycles (times on the cycle's wall clock, Unix seconds)."""

    # Since when some signal has held at every cycle (None: clear at the last cycle).
    held_since: float | None = None
    # When the current episode started (None: no episode).
    started: float | None = None
    # Since when no signal has held, during an episode.
    clear_since: float | None = None
    # The signals of the last cycle that had any: what the condition tells while the episode lasts.
    signals: tuple[Signal, ...] = ()

    @property
    def active(self) -> bool:
        return self.started is not None


class Transition(Enum):
    STARTED = "started"
    ENDED = "ended"


def advance(
    previous: Episode, held: tuple[Signal, ...], now: float, windows: Windows
) -> tuple[Episode, Transition | None]:
    """One cycle of one tier's episode: `held` are the signals holding at `now`."""
    if held:
        since = previous.held_since if previous.held_since is not None else now
        episode = replace(previous, held_since=since, clear_since=None, signals=held)
        if not episode.active and now - since >= windows.hold_seconds:
            return replace(episode, started=now), Transition.STARTED
        return episode, None
    if not previous.active:
        return Episode(), None
    clear = previous.clear_since if previous.clear_since is not None else now
    if now - clear >= windows.clear_seconds:
        return Episode(), Transition.ENDED
    return replace(previous, held_since=None, clear_since=clear), None
