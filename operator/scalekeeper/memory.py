"""What one policy carries from one cycle to the next inside the operator process, and how it is restored
from the policy's status after a start or a failover."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import model
from .engine.bottleneck import Episode, Signal
from .engine.types import TargetHistory
from .kube.versions import is_older

if TYPE_CHECKING:
    from .policy import Parsed

log = logging.getLogger("scalekeeper.memory")

# Watches deliver a write within milliseconds, seconds when the API server is loaded. A note of our own
# write that the watch has still not shown after this long is not lag: the object was deleted or
# replaced meanwhile, and the watch is believed again.
WATCH_LAG_LIMIT_SECONDS = 30.0


@dataclass(frozen=True)
class OwnWrite:
    """Our last write to an object: the version it was made at (None for a create), the object as the API
    server answered it, its version, and when (monotonic clock). The watches may not have seen it yet at
    the next cycle; while they show an older version, this is the object's current state."""

    before: str | None
    after: Any
    after_version: str
    at: float

    def still_ahead_of(self, watched_version: str | None, now: float) -> bool:
        if now - self.at >= WATCH_LAG_LIMIT_SECONDS:
            return False
        if watched_version is None:
            return self.before is None  # created by us, not listed yet
        # Older, not just "at the version we wrote at": a write retried past status changes leaves
        # versions between the two that hold the old state.
        skipped = frozenset({self.before}) if self.before is not None else frozenset()
        return is_older(watched_version, self.after_version, skipped)


@dataclass(frozen=True)
class DeletionCosts:
    """Pod deletion costs written (pod -> cost) at `since` (monotonic seconds), not yet seen by the watch."""

    costs: dict[str, int]
    since: float


@dataclass
class PolicyMemory:
    """What one policy carries between cycles inside the operator process."""

    histories: dict[str, TargetHistory] = field(default_factory=dict)
    # Fingerprints of the status last written and of its signature (see publish.py), not the status
    # itself: a few bytes instead of about 6 KB of dicts per policy, thousands of policies over.
    last_status: tuple[bytes, bytes] | None = None
    last_status_write: float = 0.0
    # Per target: the (limitedBy, desired) pair last announced with an Event, so holds are told once.
    announced: dict[str, tuple[str, int]] = field(default_factory=dict)
    last_scale_time: dict[str, datetime] = field(default_factory=dict)
    conditions: dict[str, tuple[str, str]] = field(default_factory=dict)
    # The history last written to status, per target; None until read back from status after a start.
    persisted: dict[str, dict[str, Any]] | None = None
    # Our own writes the watches may not show yet, per (target name, object): see OwnWrite.
    own_writes: dict[tuple[str, str], OwnWrite] = field(default_factory=dict)
    # Per target, the (current, desired, limitedBy) last logged at INFO.
    logged: dict[str, tuple[int, int, str]] = field(default_factory=dict)
    # The spec parsed at this generation, with its tiers: built once, not every cycle.
    parsed: Parsed | None = None
    # Per worker target: the deletion costs written before a scale-down, until the pod watch shows them.
    protections: dict[str, DeletionCosts] = field(default_factory=dict)
    # Per worker target: why its last scale-down went ahead unprotected (absent: it was protected).
    unprotected: dict[str, str] = field(default_factory=dict)
    # Per target (and `connections`): its bottleneck episode (engine/bottleneck.py).
    episodes: dict[str, Episode] = field(default_factory=dict)
    # Per target that watches its load grow at maxReplicas: the load when it got there.
    at_max_load: dict[str, float] = field(default_factory=dict)

    def wrote(self, key: tuple[str, str], write: OwnWrite) -> None:
        self.own_writes[key] = write

    def believed(self, key: tuple[str, str], watched_version: str | None, now: float) -> Any | None:
        """Our own write's answer when the watch still shows an older version of the object; None when
        the watch is current (the note is then dropped)."""
        mine = self.own_writes.get(key)
        if mine is None:
            return None
        if mine.still_ahead_of(watched_version, now):
            return mine.after
        del self.own_writes[key]
        return None


def restore_memory(status: model.ScalingPolicyStatus, memory: PolicyMemory) -> None:
    """After a (re)start or a failover, carry on from what the previous process wrote: its histories (a
    scale step taken just before a crash still counts against the rate policies), and what it had told
    (a hold, a bad condition or a bottleneck episode already in the status is not announced again with an
    Event)."""
    memory.persisted = {}
    for cond in status.conditions:
        memory.conditions[cond.type] = (cond.status.value, cond.reason)
    for b in status.bottlenecks or []:
        # Still going on: it ends once clear for its window, with its Normal Event; a new Warning only after.
        started = b.since.timestamp() if b.since is not None else 0.0
        memory.episodes[b.name] = Episode(started=started, signals=(Signal(b.reason, b.message),))
    for t in status.targets:
        if t.desired_replicas is not None:
            memory.announced[t.name] = (t.limited_by.value, t.desired_replicas)
    for t in status.targets:
        if t.history is None:
            continue
        try:
            memory.histories[t.name] = TargetHistory.from_dict(t.history)
        except ValueError as exc:
            log.warning("ignoring unreadable history of %s: %s", t.name, exc)
            continue
        memory.persisted[t.name] = t.history


def read_status(raw: dict[str, Any] | None) -> model.ScalingPolicyStatus:
    """The status as found, or a fresh one when it is absent or unreadable (written by another version)."""
    if raw:
        try:
            return model.ScalingPolicyStatus.model_validate(raw)
        except Exception:
            log.debug("starting from an empty status: the one found does not parse")
    return model.ScalingPolicyStatus()
