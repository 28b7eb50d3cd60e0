"""Raw recommendations per tier, from metric readings.

Each function answers "how many replicas would this load need right now", applying the HPA's
tolerance band on the usage ratio so that a recommendation only moves when the load has
moved by more than the tolerance. Stabilization and rate limits come later (rules.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .types import LimitedBy, Proposal
from .wait import objective_estimate

# A sample is what the operator hands over per metric: a bare value, (value, timestamp), or None.
SampleInput = float | tuple[float | None, float | None] | None

# Prometheus values carry float noise (0.1 + 0.2 is not 0.3); without this, 0.30000000000000004
# req/s at 0.1 per replica would ask for 4 replicas instead of 3. The HPA avoids the same problem
# by rounding to milli-units; a relative 1e-9 is far below any meaningful load difference.
_CEIL_SLACK = 1e-9


# The HPA's int32 ceiling; a need beyond it (a near-zero per-worker rate) is clamped to max later.
_MAX_REPLICAS = 2**31 - 1


def ceil_replicas(need: float) -> int:
    """Smallest replica count covering `need`, ignoring float noise; monotone in `need`."""
    if not need < _MAX_REPLICAS:  # also catches inf and NaN
        return _MAX_REPLICAS
    return max(0, math.ceil(need - _CEIL_SLACK * max(1.0, abs(need))))


def tolerance_holds(usage_ratio: float, tolerance: float) -> bool:
    """Whether a usage ratio is inside the no-change band.

    Written as the v1.33+ controller's inclusive bounds check (1-t <= r <= 1+t); NaN (0/0)
    is outside, which is what lets an empty target at zero stay at zero.
    """
    return (1.0 - tolerance) <= usage_ratio <= (1.0 + tolerance)


def ratio_replicas(total: float, per_replica: float, current: int, tolerance: float) -> tuple[int, bool]:
    """The HPA's AverageValue calculation: (replicas, held by tolerance).

    Usage ratio is total / (per_replica * current); inside the band the answer is `current`,
    outside it is ceil(total / per_replica).
    """
    if per_replica <= 0 or not math.isfinite(per_replica):
        raise ValueError(f"per-replica target must be a positive number, got {per_replica!r}")
    if current > 0 and tolerance_holds(total / (per_replica * current), tolerance):
        return current, True
    return ceil_replicas(total / per_replica), False


@dataclass(frozen=True)
class Reading:
    """A validated metric value: `value` is None exactly when `problem` says why."""

    label: str
    value: float | None
    problem: str | None = None
    # No series at all (not a bad value): for an input that only refines a decision, "not read yet".
    absent: bool = False

    @property
    def ok(self) -> bool:
        return self.value is not None


def read_metric(label: str, sample: SampleInput, now: float, max_age_seconds: float | None) -> Reading:
    """Validate one sample; `label` names it in messages ("metric waiting for queue video")."""
    timestamp: float | None = None
    if isinstance(sample, tuple):
        value, timestamp = sample
    else:
        value = sample
    if value is None:
        return Reading(label, None, f"{label} is absent", absent=True)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return Reading(label, None, f"{label} is not a number ({value!r})")
    value = float(value)
    if math.isnan(value):
        return Reading(label, None, f"{label} is NaN")
    if math.isinf(value):
        return Reading(label, None, f"{label} is infinite")
    if value < 0:
        return Reading(label, None, f"{label} is negative ({value:g})")
    if max_age_seconds is not None and timestamp is not None:
        if not math.isfinite(timestamp):
            return Reading(label, None, f"{label} has no valid timestamp")
        age = now - timestamp
        if age > max_age_seconds:
            return Reading(label, None, f"{label} is stale ({age:g}s old, max age {max_age_seconds:g}s)")
    return Reading(label, value)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def size_by_rate(
    reading: Reading, per_replica: float, current: int, tolerance: float, *, what: str, key: str = "value"
) -> Proposal:
    """Recommendation for a tier whose load is one total, spread evenly (web, read replicas)."""
    if reading.value is None:
        return Proposal(
            None, reading.problem or f"{reading.label} is unusable", missing=(reading.problem or "",)
        )
    replicas, held = ratio_replicas(reading.value, per_replica, current, tolerance)
    ratio_text = f"{what} {_fmt(reading.value)} at {_fmt(per_replica)} per replica"
    if held:
        return Proposal(
            replicas,
            f"{ratio_text} is within tolerance {tolerance:g} of {current}",
            LimitedBy.TOLERANCE,
            metrics={key: reading.value},
        )
    return Proposal(replicas, f"{ratio_text} needs {replicas}", metrics={key: reading.value})


@dataclass(frozen=True)
class WorkerParams:
    """The sizing knobs of one Celery queue's workers (see model.WorkerSpec)."""

    queue: str
    concurrency: int = 1
    prefetch_multiplier: int = 4
    tasks_per_worker: float | None = None
    drain_seconds: float | None = None
    activation_tasks: float = 1.0
    cooldown_seconds: float = 300.0
    # The to-zero cooldown only matters when zero is allowed at all.
    min_replicas: int = 0
    # The range the completion rate is averaged over (the default query's rate(...[1m])).
    rate_window_seconds: float = 60.0
    target_wait_seconds: float | None = None
    # The objective's search stops here (the tier's maxReplicas).
    max_replicas: int = _MAX_REPLICAS

    @property
    def effective_tasks_per_worker(self) -> float:
        # Without tasksPerWorker the queue estimate is still kept, at what one worker can hold
        # (concurrency x prefetch): it is what scales up before the drain estimate trusts the
        # completion rate (a rate window into a backlog), and it keeps the answer monotone when the
        # drain estimate appears or vanishes with the backlog. It is not always below the drain
        # estimate: with a small prefetch it asks for a pod per concurrency x prefetch tasks, which
        # on bench/quality_gap.py's trace keeps a drainSeconds-only worker at ~190% of the oracle's
        # replica-hours; a tasksPerWorker set too replaces it.
        if self.tasks_per_worker is not None:
            return self.tasks_per_worker
        return float(self.concurrency * self.prefetch_multiplier)


@dataclass(frozen=True)
class WorkerSizing:
    proposal: Proposal
    idle_since: float | None
    backlog_since: float | None = None


def size_worker(
    params: WorkerParams,
    current: int,
    tolerance: float,
    now: float,
    *,
    waiting: Reading,
    in_flight: Reading,
    arrival_rate: Reading | None = None,
    completion_rate: Reading | None = None,
    idle_since: float | None = None,
    ready: int | None = None,
    backlog_since: float | None = None,
    service_seconds: Reading | None = None,
    service_scv: Reading | None = None,
) -> WorkerSizing:
    """Recommendation for one queue's worker Deployment.

    load = waiting + in-flight, with in-flight capped at what the current workers can hold
    (replicas x concurrency x prefetch) so that stale series of deleted workers cannot
    inflate it. Two estimates, the larger wins, each behind the tolerance band:
      * queue: ceil(load / tasksPerWorker);
      * drain (with drainSeconds): ceil((arrival + load / drainSeconds) / per-worker rate), the
        per-worker rate being the completion rate / ready workers, measured only once tasks have
        been waiting at every cycle for the completion rate's whole window (`backlog_since`, at
        least rate_window_seconds ago). Workers that were not all busy over that window complete
        fewer tasks than they can: the rate would then measure the demand, not the capacity, and
        the estimate would ask for more workers each time it added some. Only ready workers
        complete tasks: dividing by `current`, which counts pods still starting, would make each
        worker look slower right after every scale-up. `ready` None (not reported) falls back to
        `current`.
      * objective (with targetWaitSeconds): the fewest workers whose predicted p95 wait meets it
        (engine/wait.py), from the arrival rate, the runtime's mean and scv, and the load. Until a
        runtime is read it gives no answer and says so; then, and whenever tasksPerWorker or
        drainSeconds is set, the queue estimate sizes too.
    From zero only when load >= activationTasks; to zero only after the backlog has been
    zero for cooldownSeconds. The result carries idle_since and backlog_since for the next
    cycle. `arrival_rate`/`completion_rate` None means "not collected"; a Reading with a
    problem means "collected but unusable", which blocks scale-down.
    """
    queue = params.queue
    missing: list[str] = [r.problem for r in (waiting, in_flight) if r.problem is not None]
    metrics: dict[str, float] = {}
    load: float | None = None
    held = 0.0
    if waiting.value is not None and in_flight.value is not None:
        bound = float(current * params.concurrency * params.prefetch_multiplier)
        held = min(in_flight.value, bound)
        load = waiting.value + held
        metrics.update(waiting=waiting.value, in_flight=held, load=load)

    if load is None:
        new_idle = idle_since
    elif load > 0:
        new_idle = None
    else:
        new_idle = now if idle_since is None else idle_since
    if waiting.value is None:
        new_backlog = backlog_since
    elif waiting.value > 0:
        new_backlog = now if backlog_since is None else backlog_since
    else:
        new_backlog = None

    estimates: list[tuple[int, bool, str]] = []
    notes: list[str] = []
    objective_sized = False
    if params.target_wait_seconds is not None and load is not None:
        # A bad arrival rate is a fault (it blocks scale-down). None read yet is not: a counter is created by
        # its first event, so a queue no task was ever sent to has none; nor is a runtime not read yet.
        if arrival_rate is not None and arrival_rate.problem is not None and not arrival_rate.absent:
            missing.append(arrival_rate.problem)
        estimate = objective_estimate(
            params.target_wait_seconds,
            params.concurrency,
            load,
            None if arrival_rate is None else arrival_rate.value,
            None if service_seconds is None else service_seconds.value,
            None if service_scv is None else service_scv.value,
            params.max_replicas,
        )
        if estimate.replicas is not None:
            objective_sized = True
            estimates.append((estimate.replicas, estimate.replicas == current, estimate.text))
            if arrival_rate is not None and arrival_rate.value is not None:
                metrics.update(arrival_rate=arrival_rate.value)
        else:
            notes.append(estimate.text)
    if load is not None and not (
        objective_sized and params.tasks_per_worker is None and params.drain_seconds is None
    ):
        tpw = params.effective_tasks_per_worker
        replicas, held_band = ratio_replicas(load, tpw, current, tolerance)
        estimates.append(
            (replicas, held_band, f"load {_fmt(load)} at {_fmt(tpw)} tasks/worker needs {replicas}")
        )
    if load is not None:
        # The workers the in-flight tasks fill are busy, not spare: sizing below them would only send
        # tasks back to the broker and start a backlog that the next cycle scales up for again.
        capacity = float(params.concurrency * params.prefetch_multiplier)
        if held > 0:
            busy = ceil_replicas(held / capacity)
            estimates.append((busy, busy == current, f"{_fmt(held)} in flight fill {busy} workers"))

    if params.drain_seconds is not None:
        for reading in (arrival_rate, completion_rate):
            if reading is not None and reading.problem is not None and reading.problem not in missing:
                missing.append(reading.problem)
        per_worker: float | None = None
        completing = current if ready is None else ready
        if (
            completion_rate is not None
            and completion_rate.value is not None
            and completion_rate.value > 0
            and completing > 0
            and new_backlog is not None
            and now - new_backlog >= params.rate_window_seconds
        ):
            per_worker = completion_rate.value / completing
        if arrival_rate is not None and arrival_rate.value is not None and load is not None and per_worker:
            need_rate = arrival_rate.value + load / params.drain_seconds
            replicas, held_band = ratio_replicas(need_rate, per_worker, current, tolerance)
            metrics.update(arrival_rate=arrival_rate.value, per_worker_rate=per_worker)
            estimates.append(
                (
                    replicas,
                    held_band,
                    f"draining in {params.drain_seconds:g}s at {_fmt(per_worker)} tasks/s/worker "
                    f"needs {replicas}",
                )
            )

    head = f"queue {queue}"
    if not estimates:
        reason = f"{head}: " + ("; ".join(missing) if missing else "no usable metric")
        return WorkerSizing(
            Proposal(None, reason, missing=tuple(missing), metrics=metrics), new_idle, new_backlog
        )
    assert load is not None  # every estimate needs the load

    desired = max(e[0] for e in estimates)
    all_held = desired == current and all(e[1] for e in estimates)
    limited_by = LimitedBy.TOLERANCE if all_held else LimitedBy.NONE
    reason = f"{head}: " + "; ".join([*notes, *(e[2] for e in estimates)])
    if all_held:
        reason += f" (within tolerance {tolerance:g})"

    if current == 0 and load < params.activation_tasks:
        desired = 0
        limited_by = LimitedBy.ACTIVATION
        reason = (
            f"{head}: load {_fmt(load)} is below activation {_fmt(params.activation_tasks)}; staying at 0"
        )
    elif desired == 0 and current > 0 and params.min_replicas == 0:
        idle_for = 0.0 if new_idle is None else now - new_idle
        if idle_for < params.cooldown_seconds:
            desired = 1
            limited_by = LimitedBy.COOLDOWN
            reason = (
                f"{head}: backlog empty for {idle_for:g}s of the {params.cooldown_seconds:g}s "
                "cooldown; keeping 1 worker"
            )
    return WorkerSizing(Proposal(desired, reason, limited_by, tuple(missing), metrics), new_idle, new_backlog)
