"""Presets: whose series a worker's default queries read. Each is one exporter's query templates for the
worker tier's inputs (`<app>` and `<queue>` filled in by the tier), and None for an input the exporter
cannot give, which the policy must then write itself where it is needed. No I/O; the model and the tiers
read them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from .promql import runtime_mean, runtime_scv


class Preset(StrEnum):
    """An exporter whose series the default queries read."""

    SCALEKEEPER = "scalekeeper"
    CELERY_REDIS_PROMETHEUS = "celery-redis-prometheus"


@dataclass(frozen=True)
class PresetQueries:
    """One exporter's templates, and what the CRD says of it."""

    waiting: str
    in_flight: str
    arrival_rate: str | None
    completion_rate: str
    # The objective's inputs (targetWaitSeconds): a task's mean runtime, and its runtime's squared
    # coefficient of variation.
    service_seconds: str | None
    service_scv: str | None
    # Busy-worker protection's input: tasks executing per worker pod, by a `pod` label.
    executing_per_pod: str | None
    summary: str


# celery-redis-prometheus counts an execution once under state started and once under the state it ended
# in: succeeded, failed, retries-exceeded (a failure after the last retry) or retried (it ended; the retry is
# a new message). Its counters are created on their first event, so a state not seen since the exporter
# started has no series: `or vector(0)`, else a queue whose tasks never failed would have no in-flight value.
_CRP_STARTED = '(sum(celery_tasks_total{queue="<queue>",state="started"}) or vector(0))'
_CRP_ENDED = (
    '(sum(celery_tasks_total{queue="<queue>",state=~"succeeded|failed|retries-exceeded|retried"})'
    " or vector(0))"
)

PRESETS: dict[Preset, PresetQueries] = {
    Preset.SCALEKEEPER: PresetQueries(
        # Matching `app` as well as `queue`: two applications' queues of one name, scraped by one Prometheus,
        # would otherwise add up.
        waiting='celery_queue_waiting_tasks{app="<app>",queue="<queue>"}',
        in_flight='celery_queue_inflight_tasks{app="<app>",queue="<queue>"}',
        arrival_rate='rate(celery_queue_published_total{app="<app>",queue="<queue>"}[1m])',
        completion_rate='rate(celery_queue_completed_total{app="<app>",queue="<queue>"}[1m])',
        # Over 5 minutes: a runtime reading needs tasks that finished, and long tasks finish seldom.
        service_seconds=runtime_mean("celery_queue_task_runtime_seconds", 'app="<app>",queue="<queue>"'),
        service_scv=runtime_scv('celery_queue_task_runtime_seconds_bucket{app="<app>",queue="<queue>"}'),
        executing_per_pod='sum by (pod) (celery_worker_executing_tasks{app="<app>"})',
        summary="the exporter shipped with scalekeeper, exporter/, for Redis or RabbitMQ",
    ),
    Preset.CELERY_REDIS_PROMETHEUS: PresetQueries(
        # The queue's list plus its messages in Redis' `unacked` hash: waiting and prefetched, and with
        # task_acks_late also running (which in-flight then counts a second time). Needs --queue-length.
        waiting='celery_queue_length{queue="<queue>"}',
        # Running: started minus ended, from counters that restart together with the exporter (a task it
        # did not see sent is counted under queue "None", so tasks running across a restart do not go
        # negative here). An ending it never hears (a worker killed mid-task, its event connection lost)
        # stays counted until it restarts; clamp_min hides the rarer opposite.
        in_flight=f"clamp_min({_CRP_STARTED} - {_CRP_ENDED}, 0)",
        # It counts no publishes.
        arrival_rate=None,
        # Executions that succeeded or failed, as the shipped exporter's completions. No series before a first
        # one since the exporter started: a rate of 0 then, which measures no capacity (the drain estimate
        # waits for a positive one).
        completion_rate=(
            'sum(rate(celery_tasks_total{queue="<queue>",state=~"succeeded|failed|retries-exceeded"}[1m])) '
            "or vector(0)"
        ),
        # Its runtime histogram, with prometheus_client's default buckets: none above 10 s, so the variance of
        # longer runtimes is not seen (the mean, from _sum and _count, still is).
        service_seconds=runtime_mean("celery_task_runtime_seconds", 'queue="<queue>"'),
        service_scv=runtime_scv('celery_task_runtime_seconds_bucket{queue="<queue>"}'),
        executing_per_pod=None,
        summary="PyPI celery-redis-prometheus 2.0, run with --queue-length, Redis only; it has no app label, "
        "so its queries match the queue only; no arrival rate, so drainSeconds and targetWaitSeconds need "
        "metrics.arrivalRate; its runtime buckets end at 10 s; no per-worker executing count, so busy "
        "workers are not protected without metrics.executingPerPod; in flight is estimated as started minus "
        "ended task counters",
    ),
}
