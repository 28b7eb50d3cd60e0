"""The steps: the targets' replicas watched, each step written and timed until each target shows its new
spec.replicas, with random gaps between steps."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.reaction import Replicas
from bench.reaction_peer.autoscalers import KEDA, LABEL, SK, replicas_for
from bench.reaction_peer.signals import Signal


@dataclass
class Step:
    phase: str
    value: int
    replicas: int
    written: float  # the write returned (epoch seconds)
    queryable: float  # Prometheus first answered the value
    seen: dict[str, float | None] = field(default_factory=dict)  # moving targets; None: timed out
    rise: bool = True  # the value rose (a fall is not timed on a rises-only target)

    def reaction(self, target: str, origin: str) -> float | None:
        """Seconds from `origin` ("written" or "queryable") to the target's new replicas; None if it
        timed out. Only for targets the step moved (KeyError otherwise)."""
        seen = self.seen[target]
        return None if seen is None else seen - (self.written if origin == "written" else self.queryable)


def seconds(value: float | None) -> str:
    return "timeout" if value is None else f"{value:.2f} s"


@dataclass
class Bench:
    kubeconfig: str
    signal: Signal
    watcher: Replicas
    rng: random.Random
    sync: float
    deadline: float
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Targets timed on rises only, and what puts one back at a lowered size after a fall (Setup.rises_only).
    rises_only: tuple[str, ...] = ()
    lower: Callable[[str, int], None] | None = None
    value: int | None = None

    def run(self, phase: str, values: list[int], timeout: float) -> None:
        for value in values:
            if time.time() + timeout > self.deadline:
                self.notes.append(f"{phase}: stopped before a {value} step, time budget spent")
                return
            replicas = replicas_for(value)
            rise = self.value is None or value > self.value
            moving = [
                t
                for t in (SK, KEDA)
                if self.watcher.current.get(t) != replicas and (rise or t not in self.rises_only)
            ]
            for t in moving:
                self.watcher.forget(t, replicas)
            written = self.signal.write(value)
            self.value = value
            queryable = self.signal.queryable(value)
            step = Step(phase, value, replicas, written, queryable, rise=rise)
            for t in moving:
                step.seen[t] = self.watcher.wait(t, replicas, max(written, queryable) + timeout)
            self.steps.append(step)
            self._put_back(replicas)
            shown = ", ".join(f"{LABEL[t]} {seconds(step.reaction(t, 'written'))}" for t in moving)
            print(
                f"  {phase} step {len(self.steps)}: value {value} -> {replicas} replicas "
                f"(queryable {queryable - written:.2f} s after the write); from the write: {shown}",
                flush=True,
            )
            time.sleep(self.rng.uniform(0.5, 0.5 + self.sync))

    def _put_back(self, replicas: int) -> None:
        for t in self.rises_only:
            if self.lower is not None and self.watcher.current.get(t, 0) > replicas:
                self.lower(t, replicas)

    def settle(self, value: int, timeout: float) -> None:
        self.signal.write(value)
        self.value = value
        replicas, end = replicas_for(value), time.time() + timeout
        self._put_back(replicas)
        for t in (SK, KEDA):
            if self.watcher.wait(t, replicas, end) is None:
                raise RuntimeError(f"{t} did not reach {replicas} replicas within {timeout:.0f} s")
