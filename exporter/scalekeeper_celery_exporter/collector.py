"""The scrape: reads the broker live, takes the events' snapshot, and turns both into series. A value nobody
could read is left out of the scrape (missing, never zero)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from .events import RUNTIME_BUCKETS, EventState, Snapshot
from .reading import Broker, BrokerError, BrokerReading

log = logging.getLogger("scalekeeper_celery_exporter.collector")

QUEUE_LABELS = ["app", "broker", "queue"]
WORKER_LABELS = ["app", "broker", "worker", "pod"]
OWN_LABELS = ["app", "broker"]


class QueueCollector(Collector):
    def __init__(
        self,
        broker: Broker,
        state: EventState,
        app_label: str,
        broker_label: str,
        queues: list[str] | None,
        event_errors: Callable[[], int],
    ) -> None:
        self.broker = broker
        self.state = state
        self.labels = [app_label, broker_label]
        self.queues = queues
        self.event_errors = event_errors
        self.scrape_errors = 0
        self._lock = threading.Lock()

    def describe(self) -> list[Metric]:
        # Registration must not touch the broker: collect() reads it live.
        return []

    def _read(self) -> tuple[list[str], BrokerReading | None]:
        try:
            queues = self.queues if self.queues is not None else self.broker.discover()
            return queues, self.broker.read(queues)
        except BrokerError as e:
            with self._lock:
                self.scrape_errors += 1
            log.warning("broker read failed", extra={"broker": self.labels[1], "error": str(e)})
            return self.queues or [], None

    def collect(self) -> Iterator[Metric]:
        start = time.perf_counter()
        queues, reading = self._read()
        snap = self.state.snapshot(queues)
        if reading is not None:
            yield from self._broker_series(reading)
        yield from self._event_series(snap)
        yield from self._inflight(reading, snap)
        yield from self._own_series(reading, snap, time.perf_counter() - start)

    def _gauge(self, name: str, doc: str, values: dict[str, int]) -> GaugeMetricFamily:
        g = GaugeMetricFamily(name, doc, labels=QUEUE_LABELS)
        for q in sorted(values):
            g.add_metric([*self.labels, q], values[q])
        return g

    def _counter(self, name: str, doc: str, values: dict[str, int]) -> CounterMetricFamily:
        c = CounterMetricFamily(name, doc, labels=QUEUE_LABELS)
        for q in sorted(values):
            c.add_metric([*self.labels, q], values[q])
        return c

    def _broker_series(self, reading: BrokerReading) -> Iterator[Metric]:
        yield self._gauge(
            "celery_queue_waiting_tasks", "Messages waiting in the queue (every priority).", reading.waiting
        )
        yield self._gauge(
            "celery_queue_prefetched_tasks",
            "Messages delivered to a worker and not acked yet, as the broker counts them.",
            reading.prefetched,
        )

    def _event_series(self, snap: Snapshot) -> Iterator[Metric]:
        if snap.executing is not None:
            yield self._gauge(
                "celery_queue_executing_tasks",
                "Tasks running on the queue's workers (worker-heartbeat active, summed).",
                snap.executing,
            )
        per_worker = GaugeMetricFamily(
            "celery_worker_executing_tasks",
            "Tasks running on one worker (its last heartbeat).",
            labels=WORKER_LABELS,
        )
        for host in sorted(snap.per_worker):
            per_worker.add_metric([*self.labels, host, host.partition("@")[2] or host], snap.per_worker[host])
        yield per_worker
        if snap.published is not None:
            yield self._counter(
                "celery_queue_published", "Tasks sent to the queue (task-sent).", snap.published
            )
        if snap.completed is not None:
            yield self._counter(
                "celery_queue_completed", "Task executions finished, succeeded or failed.", snap.completed
            )
        if snap.failed is not None:
            yield self._counter(
                "celery_queue_failed", "Task executions that failed (task-failed).", snap.failed
            )
        if snap.runtimes is not None:
            h = HistogramMetricFamily(
                "celery_queue_task_runtime_seconds", "Runtime of succeeded tasks.", labels=QUEUE_LABELS
            )
            for q in sorted(snap.runtimes):
                r = snap.runtimes[q]
                buckets = [(str(b), n) for b, n in zip(RUNTIME_BUCKETS, r.buckets, strict=True)]
                h.add_metric([*self.labels, q], [*buckets, ("+Inf", r.count)], r.total)
            yield h

    def _inflight(self, reading: BrokerReading | None, snap: Snapshot) -> Iterator[Metric]:
        # prefetched counts what the broker still holds unacked; running tasks of workers that ack early are
        # not among them, so they are added (with acks_late on they already are, and are not counted twice).
        if reading is None or snap.executing_acked is None:
            return
        acked = snap.executing_acked
        yield self._gauge(
            "celery_queue_inflight_tasks",
            "Tasks delivered to workers and not finished: prefetched plus running ones already acked.",
            {q: n + acked.get(q, 0) for q, n in reading.prefetched.items()},
        )

    def _own_series(self, reading: BrokerReading | None, snap: Snapshot, seconds: float) -> Iterator[Metric]:
        def own(
            cls: type[GaugeMetricFamily] | type[CounterMetricFamily], name: str, doc: str, v: float
        ) -> Metric:
            m = cls(name, doc, labels=OWN_LABELS)
            m.add_metric(self.labels, v)
            return m

        yield own(
            GaugeMetricFamily,
            "scalekeeper_exporter_broker_up",
            "1 when this scrape read the broker.",
            1 if reading is not None else 0,
        )
        yield own(
            GaugeMetricFamily,
            "scalekeeper_exporter_events_connected",
            "1 while Celery's events are being received.",
            1 if snap.connected else 0,
        )
        yield own(
            CounterMetricFamily,
            "scalekeeper_exporter_scrape_errors",
            "Scrapes that could not read the broker.",
            self.scrape_errors,
        )
        yield own(
            CounterMetricFamily,
            "scalekeeper_exporter_event_errors",
            "Event connections lost and worker inspections failed.",
            self.event_errors(),
        )
        if reading is not None:
            yield own(
                GaugeMetricFamily,
                "scalekeeper_exporter_unattributed_prefetched_tasks",
                "Unacked messages whose queue could not be found.",
                reading.unattributed_prefetched,
            )
        yield own(
            GaugeMetricFamily,
            "scalekeeper_exporter_unattributed_executing_tasks",
            "Running tasks on workers that consume several queues (not split among them).",
            snap.unattributed_executing,
        )
        yield own(
            CounterMetricFamily,
            "scalekeeper_exporter_unattributed_finished_tasks",
            "Finished tasks whose queue could not be told.",
            snap.unattributed_finished,
        )
        yield own(
            GaugeMetricFamily,
            "scalekeeper_exporter_scrape_duration_seconds",
            "Time this scrape spent reading.",
            seconds,
        )
