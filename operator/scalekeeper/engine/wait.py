"""The wait objective's queueing model: the fewest worker pods whose predicted wait quantile meets a target.

Servers are pods x concurrency (one Celery pool process runs one task at a time). Erlang C gives the chance
that an arriving task waits, and the M/M/m waiting time its tail, P(W > t) = C * exp(-(m*mu - lambda) * t).
Real runtimes are not exponential (they are heavy-tailed), and plain Erlang C under-predicts their waits: the
Allen-Cunneen approximation scales the wait by (ca^2 + cs^2) / 2, with cs^2 the service time's squared
coefficient of variation (measured from the runtime histogram) and ca^2 = 1 (Poisson arrivals). Tasks
already in the system (waiting, prefetched or running) must clear in time too: the last of those queued
starts after about (in_system - m) / (m*mu), and that must be within BACKLOG_SHARE of the target.

Pure: no I/O, no clock. The tier reads the inputs; the rules (stabilization, rate limits, bounds) apply after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_POISSON_SCV = 1.0  # arrivals' squared coefficient of variation, as Allen-Cunneen takes it for Poisson
# The share of the target the tasks queued now may take to clear. Not all of it: they have already waited
# for a while the metrics do not show, the tasks arriving meanwhile queue behind them, and a pod added now
# serves only once started. With the whole target, a queue building on a morning rise was let grow until
# its tasks waited just past it (bench.quality: 2 minutes over on nycflights13 with lognormal runtimes).
BACKLOG_SHARE = 0.5


@dataclass(frozen=True)
class WaitInputs:
    """What the objective is computed from, every rate and time in seconds."""

    arrival_rate: float  # tasks per second arriving
    mean_service_seconds: float  # a task's mean runtime
    service_scv: float  # the runtime's variance / mean^2 (1 for exponential)
    in_system: float  # tasks waiting, prefetched or running now
    concurrency: int  # pool processes per pod
    target_wait_seconds: float  # the objective: the quantile's wait at most this
    quantile: float  # which quantile of the wait, e.g. 0.95

    def __post_init__(self) -> None:
        if not (self.mean_service_seconds > 0 and math.isfinite(self.mean_service_seconds)):
            raise ValueError(f"mean service time must be positive, got {self.mean_service_seconds!r}")
        if not (0.0 < self.quantile < 1.0):
            raise ValueError(f"quantile must be between 0 and 1, got {self.quantile!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency!r}")
        for name in ("arrival_rate", "service_scv", "in_system", "target_wait_seconds"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


class _ErlangTable:
    """Erlang B for one offered load at 1, 2, ... servers, extended as far as asked: a search over server
    counts then costs as much as its largest count once, not at every step."""

    def __init__(self, offered: float) -> None:
        self.offered = offered
        self._blocking = [1.0]  # B(0) = 1

    def waits(self, servers: int) -> float:
        """Erlang C: the probability that an arriving task waits; 1.0 when unstable (offered >= servers)."""
        a = self.offered
        if servers < 1 or a >= servers:
            return 1.0
        if a <= 0:
            return 0.0
        table = self._blocking
        for k in range(len(table), servers + 1):
            table.append(a * table[-1] / (k + a * table[-1]))
        b = table[servers]
        return servers * b / (servers - a * (1.0 - b))


def erlang_c(servers: int, offered: float) -> float:
    """The probability that an arriving task waits, with `servers` servers and `offered` = lambda / mu;
    1.0 when the queue is unstable (offered >= servers). Through Erlang B's recursion, which stays within
    floating point for any number of servers."""
    return _ErlangTable(offered).waits(servers)


def predicted_wait(servers: int, inputs: WaitInputs, table: _ErlangTable | None = None) -> float:
    """The predicted `quantile` of a task's wait with `servers` servers, in seconds (inf when unstable):
    the larger of the steady state's quantile and the time the tasks queued now need to clear, over
    BACKLOG_SHARE (so that they clear within that share of the target)."""
    mu = 1.0 / inputs.mean_service_seconds
    spare = servers * mu - inputs.arrival_rate  # tasks per second the servers clear beyond the arrivals
    if spare <= 0:
        return math.inf
    waits = (table or _ErlangTable(inputs.arrival_rate / mu)).waits(servers)
    steady = max(0.0, math.log(waits / (1.0 - inputs.quantile))) / spare if waits > 0 else 0.0
    steady *= (_POISSON_SCV + inputs.service_scv) / 2.0
    backlog = max(0.0, inputs.in_system - servers) / (servers * mu) / BACKLOG_SHARE
    return max(steady, backlog)


def wait_replicas(inputs: WaitInputs, floor: int, ceiling: int) -> int:
    """The fewest pods in [floor, ceiling] whose predicted wait meets the target; `ceiling` when none does.

    The predicted wait never grows with more servers, so the answer is found by doubling, then bisecting:
    the work grows with the answer, not with `ceiling`."""
    floor = max(0, floor)
    ceiling = max(floor, ceiling)
    table = _ErlangTable(inputs.arrival_rate * inputs.mean_service_seconds)

    def meets(pods: int) -> bool:
        if pods == 0:
            return inputs.arrival_rate == 0 and inputs.in_system == 0
        return predicted_wait(pods * inputs.concurrency, inputs, table) <= inputs.target_wait_seconds

    if meets(floor):
        return floor
    low, high = floor, max(floor + 1, 1)  # low never meets
    while not meets(high):
        if high >= ceiling:
            return ceiling
        low, high = high, min(ceiling, high * 2)
    while high - low > 1:
        mid = (low + high) // 2
        if meets(mid):
            high = mid
        else:
            low = mid
    return high


# The quantile `targetWaitSeconds` means.
WAIT_QUANTILE = 0.95
# Beyond this many servers the Erlang table would cost seconds and memory for each answer; no worker tier
# comes near it, so a load asking for more gets the stability bound alone, capped by maxReplicas.
_MAX_MODELLED_SERVERS = 1_000_000


@dataclass(frozen=True)
class ObjectiveEstimate:
    """The objective's answer for the reason line; `replicas` None when an input is not read (the text
    says which): the other estimates then size alone."""

    replicas: int | None
    text: str


def objective_estimate(
    target_wait_seconds: float,
    concurrency: int,
    in_system: float,
    arrival_rate: float | None,
    service_seconds: float | None,
    service_scv: float | None,
    ceiling: int,
) -> ObjectiveEstimate:
    """The fewest pods in [0, ceiling] whose predicted p95 wait is within `target_wait_seconds`. A missing
    or zero mean runtime (nothing finished in the query's window: an idle queue, the first window) is not
    a fault, only no answer yet; a missing variance reads as exponential runtimes (scv 1), as said."""
    head = f"p95 wait {target_wait_seconds:g}s"
    if service_seconds is None or service_seconds <= 0:
        return ObjectiveEstimate(None, f"{head}: no task runtime read yet")
    if arrival_rate is None:
        return ObjectiveEstimate(None, f"{head}: no arrival rate read")
    scv = 1.0 if service_scv is None else service_scv
    inputs = WaitInputs(
        arrival_rate, service_seconds, scv, in_system, concurrency, target_wait_seconds, WAIT_QUANTILE
    )
    said = (
        f"{head} at {arrival_rate:.4g} tasks/s, {service_seconds:.4g}s runtime "
        f"(scv {scv:.3g}{'' if service_scv is not None else ', not read: taken as exponential'})"
    )
    stable = math.floor(arrival_rate * service_seconds / concurrency) + 1  # fewest pods with spare capacity
    if stable * concurrency > _MAX_MODELLED_SERVERS:
        replicas = min(ceiling, stable)
        return ObjectiveEstimate(replicas, f"{said} needs at least {replicas} (beyond the model's range)")
    replicas = wait_replicas(inputs, 0, min(ceiling, _MAX_MODELLED_SERVERS // concurrency))
    return ObjectiveEstimate(replicas, f"{said} needs {replicas}")
