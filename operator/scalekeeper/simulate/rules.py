"""The rules the simulator compares: each maps (now, current replicas, what the metrics show) to the
desired replicas.

  scalekeeper  the engine with the policy's worker sizing and behavior (`engine_decider`);
  hpa-default  the same sizing with the HPA's default behavior (the engine again), every 15 s;
  keda-style   every 30 s, ceil(waiting / target) on waiting tasks only (what LLEN shows;
               prefetched tasks are invisible), scale-down only after a 300 s cooldown.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable

from .. import model
from ..decision import decide
from ..engine.forecast import FORECAST_METRICS
from ..engine.types import ObservedTarget, TargetHistory
from ..tiers.workers import (
    ARRIVAL_RATE,
    COMPLETION_RATE,
    IN_FLIGHT,
    SERVICE_SCV,
    SERVICE_SECONDS,
    WAITING,
    worker_params,
    worker_target,
)
from .queue import Observation

HPA_SYNC_SECONDS = 15.0
KEDA_POLL_SECONDS = 30.0
KEDA_COOLDOWN_SECONDS = 300.0

# A rule maps (now, current replicas, what the metrics show) to the desired replicas.
Decider = Callable[[float, int, Observation], int]


class SeriesHistory:
    """The load series as Prometheus would keep it, answering the forecast's three readings the way
    `model.Forecast.queries` asks Prometheus for them."""

    def __init__(self, keep_seconds: float | None = None) -> None:
        """`keep_seconds`: how far back answers look (season + lead); older samples are dropped."""
        self.keep_seconds = keep_seconds
        self.first: float | None = None  # the first sample's time, kept or not
        self.times: list[float] = []
        self.values: list[float] = []

    def add(self, when: float, value: float) -> None:
        if self.first is None:
            self.first = when
        self.times.append(when)
        self.values.append(value)
        if self.keep_seconds is not None:
            # Drop the samples no window can reach, once they are half the list (amortised O(1)).
            stale = bisect.bisect_right(self.times, when - self.keep_seconds)
            if stale > len(self.times) // 2:
                del self.times[:stale], self.values[:stale]

    def _window(self, start: float, end: float) -> list[float]:
        lo = bisect.bisect_right(self.times, start)
        hi = bisect.bisect_right(self.times, end)
        return self.values[lo:hi]

    def forecast(self, now: float, season: float, lead: float) -> tuple[float | None, ...]:
        if self.first is None or self.first > now - season:
            return (None, None, None)  # less history than a season: Prometheus would answer nothing
        ahead = self._window(now - season, now - season + lead)
        before = self._window(now - season - lead, now - season)
        recent = self._window(now - lead, now)
        return (
            max(ahead) if ahead else None,
            sum(before) / len(before) if before else None,
            sum(recent) / len(recent) if recent else None,
        )


def engine_decider(spec: model.ScalingPolicySpec, worker: model.WorkerSpec) -> Decider:
    """The engine deciding one worker target, with its history carried between calls."""
    only = spec.model_copy(
        update={"web": None, "read_replicas": None, "connection_budget": None, "workers": [worker]}
    )
    name = worker_target(worker.queue)
    state: dict[str, TargetHistory] = {}
    forecast = worker.forecast
    history = SeriesHistory(None if forecast is None else forecast.season_seconds + forecast.lead_seconds)

    def decide_now(now: float, current: int, obs: Observation) -> int:
        samples: dict[str, dict[str, tuple[float | None, float]]] = {
            name: {
                WAITING: (float(obs.waiting), now),
                IN_FLIGHT: (float(obs.in_flight), now),
                ARRIVAL_RATE: (obs.arrival_rate, now),
                COMPLETION_RATE: (obs.completion_rate, now),
                SERVICE_SECONDS: (obs.service_seconds, now),
                SERVICE_SCV: (obs.service_scv, now),
            }
        }
        if forecast is not None:
            history.add(now, float(obs.waiting + obs.in_flight))
            readings = history.forecast(now, forecast.season_seconds, forecast.lead_seconds)
            for metric, value in zip(FORECAST_METRICS, readings, strict=True):
                samples[name][metric] = (value, now)
        observed = {name: ObservedTarget(current, ready=obs.ready)}
        d = decide(only, observed, samples, {name: state.get(name)}, now).targets[name]
        state[name] = d.history
        return d.desired

    return decide_now


def keda_decider(worker: model.WorkerSpec) -> Decider:
    # the engine's own fallback: tasksPerWorker, else what a pod holds
    target = worker_params(worker).effective_tasks_per_worker
    recent: deque[tuple[float, int]] = deque()

    def decide_now(now: float, current: int, obs: Observation) -> int:
        # LLEN: only what still sits in the broker; prefetched and running tasks are not seen.
        wanted = math.ceil(obs.waiting / target) if obs.waiting > 0 else 0
        wanted = min(max(wanted, worker.min_replicas), worker.max_replicas)
        recent.append((now, wanted))
        while recent and recent[0][0] <= now - KEDA_COOLDOWN_SECONDS:
            recent.popleft()
        if wanted >= current:
            return wanted
        # Scale down only to the highest want of the cooldown period.
        return min(current, max(w for _, w in recent))

    return decide_now
