"""scalekeeper's demo application: web tier, Celery workers per queue, queue-depth exporter, read tier.

Modules:
  settings   environment variables, read at call time
  keys       Redis key names: kombu's Redis transport layout and the demo's own bookkeeping keys
  celery_app the Celery app (queues emails, video, reports) and its one task, ``demo.work``
  produce    CLI publishing tasks at a rate or replaying a CSV trace
  exporter   Prometheus exporter of queue depth (waiting + in-flight) read from Redis at scrape time
  web        small HTTP app with /metrics, CPU work and reads against the read replicas
  load       HTTP load generator for the web tier
"""

__version__ = "0.1.0"
