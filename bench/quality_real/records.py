"""The real runs' figures from what was recorded: task timings (from Redis) and the worker pods' lives and
spec.replicas (watched), counted as the simulator counts them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CREATION_SLACK = 2.0  # seconds: creationTimestamp resolution (1 s) plus the watch's delivery


@dataclass(frozen=True)
class PodLife:
    name: str
    created: float  # seconds from the start instant
    deleted: float | None  # None: still there at the end


@dataclass(frozen=True)
class TaskTiming:
    index: int
    enqueued: float  # seconds from the start instant
    started: float
    finished: float
    host: str


def task_waits(
    scheduled: Sequence[float], timings: Sequence[TaskTiming], horizon: float
) -> tuple[list[float], list[float], list[float | None]]:
    """(arrivals, waits, starts) per scheduled task, as the simulator counts them: the arrival is the real
    publish time when the task recorded one (else its schedule offset); a task that did not start by the
    horizon waits until the horizon (and has no start)."""
    by_index: dict[int, TaskTiming] = {}
    for t in timings:  # a task run twice (redelivered) keeps its first start
        if t.index not in by_index or t.started < by_index[t.index].started:
            by_index[t.index] = t
    arrivals: list[float] = []
    waits: list[float] = []
    starts: list[float | None] = []
    for i, offset in enumerate(scheduled):
        timing = by_index.get(i)
        arrival = timing.enqueued if timing is not None else offset
        start = timing.started if timing is not None and timing.started <= horizon else None
        arrivals.append(arrival)
        starts.append(start)
        waits.append((horizon if start is None else start) - arrival)
    return arrivals, waits, starts


def replica_seconds(pods: Sequence[PodLife], horizon: float) -> float:
    """Pod lifetimes clipped to [0, horizon]: a pod there before the start counts from the start (as the
    simulator's initial replicas do), one still there at the end until the horizon."""
    total = 0.0
    for p in pods:
        begin = max(0.0, p.created)
        end = horizon if p.deleted is None else min(p.deleted, horizon)
        total += max(0.0, end - begin)
    return total


def scale_events(replicas: Sequence[tuple[float, int]], horizon: float) -> int:
    """Changes of spec.replicas in (0, horizon], from (time, replicas) samples in time order."""
    events, last = 0, None
    for t, n in replicas:
        if t <= 0:
            last = n
            continue
        if t > horizon:
            break
        if last is not None and n != last:
            events += 1
        last = n
    return events


def pods_alive(pods: Sequence[PodLife], horizon: float) -> list[tuple[float, int]]:
    """(time, worker pods existing) after every creation and deletion in [0, horizon]."""
    changes: list[tuple[float, int]] = []
    for p in pods:
        if p.created < horizon and (p.deleted is None or p.deleted > 0):
            changes.append((max(0.0, p.created), 1))
            if p.deleted is not None and p.deleted < horizon:
                changes.append((p.deleted, -1))
    out: list[tuple[float, int]] = []
    alive = 0
    for t, d in sorted(changes):
        alive += d
        if out and out[-1][0] == t:
            out[-1] = (t, alive)
        else:
            out.append((t, alive))
    return out


def creation_lags(pods: Sequence[PodLife], replicas: Sequence[tuple[float, int]]) -> list[float]:
    """For each pod created during the run, seconds since the last rise of spec.replicas before it: how
    long the Deployment and ReplicaSet controllers took to act on a scale-up. A creationTimestamp is cut
    to the second and the rise is the watch event's arrival here, so a pod can look up to about a second
    older than the rise that made it: rises up to CREATION_SLACK seconds after the pod count, at lag 0."""
    rises = [t for (t, n), (_, before) in zip(replicas[1:], replicas, strict=False) if n > before and t > 0]
    lags = []
    for p in pods:
        earlier = [t for t in rises if t <= p.created + CREATION_SLACK]
        if p.created > 0 and earlier:
            lags.append(max(0.0, p.created - earlier[-1]))
    return sorted(lags)
