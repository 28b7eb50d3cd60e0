"""Scaling quality on a 10-minute slice of the real trace, run for real three ways at once (issue 8, part 3).

    make bench-quality-real
    PYTHONPATH=operator .venv/bin/python -m bench.quality_real [--day 0] [--window-start 08:00] ...

The slice: --window-minutes (10) of bench.quality's time-compressed fpp3/bank_calls trace (--compress 60:
5 min of calls -> 5 s), from --window-start on business day --day; by default 08:00-18:00 of 2003-03-03, the
morning rise (about 2,400 calls an hour at 08:00 to 4,500 at 10:00) and the evening fall (1,600 at 18:00).
Its counts are scaled as bench.quality does (the busiest 5-min interval asks for --peak-load of the
worker's capacity at maxReplicas), and `scalekeeper.simulate.make_workload` draws the arrivals (Poisson
within each interval) and service times (--service-distribution, mean --service-seconds; the tasks sleep,
they burn no CPU) with --seed: one list of tasks.

That list is replayed for real into THREE namespaces at once, each with the demo app's ConfigMap, its
`worker-video` Deployment (Celery, concurrency 2 x prefetch 1, as written) and its queue exporter, on the
cluster's shared Redis under its own key prefix ("<namespace>:"); a local producer per namespace publishes
task i at its arrival offset from a common start instant, with its own service time, and each task records
(enqueued, started, finished) in Redis (the demo's `--record-timings`). The three run concurrently and share
the machine (the output says so). The worker is the demo policy's `video` worker as written, except
minReplicas 1 everywhere (a plain HPA cannot go below 1 without the HPAScaleToZero alpha gate):
  slice-sk    scalekeeper: a ScalingPolicy with that worker (intervalSeconds as in the demo policy), its
              queries narrowed to the namespace; one local operator process watching only slice-sk;
  slice-keda  the real KEDA: a ScaledObject with the redis (list) trigger, listName the prefixed queue
              list, listLength = the peers' ratio, same min/max, KEDA's defaults (pollingInterval 30,
              cooldownPeriod 300, the HPA's default behavior);
  slice-hpa   a plain autoscaling/v2 HPA on the Object metric celery_queue_backlog_tasks (waiting +
              in flight, served by prometheus-adapter, hack/prometheus-adapter.sh) of the Deployment
              queue-exporter, AverageValue the peers' ratio, same min/max, the HPA's default behavior.
The peers' ratio is --peer-tasks-per-worker, by default the worker's tasksPerWorker. With
--objective-only, scalekeeper's worker is sized by its targetWaitSeconds alone (its tasksPerWorker and
drainSeconds dropped); the peers keep their ratio. The simulator replays the same tasks with the same
start delay and horizon under its rules scalekeeper (scalekeeper's worker), keda-style and hpa-default
(the peers' ratio alone, as the real peers have nothing else) and the oracle, for reference.

Figures per rule, real and simulated side by side, as bench.quality counts them: minutes over the
target wait (by arrival minute, nearest-rank p95), task wait p95 (a task not started by the horizon counts
its wait until then), replica-hours (worker pods from creation to deletion, watched, clipped to [start,
horizon]), scale events (changes of the Deployment's spec.replicas), and the difference real - simulated.
Writes out/bench-quality-real.json and out/bench-quality-real.png. Every namespace and Redis key it made is
deleted at the end, on failure and on Ctrl-C too. Needs the cluster (`make cluster-up`), the demo's and the
exporter's images (hack/demo-image.sh, hack/exporter-image.sh), KEDA (hack/keda.sh install) and
prometheus-adapter (hack/prometheus-adapter.sh install): `make bench-quality-real` does all of it.
"""
