"""celery_tasks' application as celery-redis-prometheus loads it (``celery -A crp_tasks prometheus``): that
exporter reads the lengths of the queues in ``task_queues`` only, here the ones QUEUES lists."""

from __future__ import annotations

import os

from celery_tasks import app
from kombu import Queue

app.conf.task_queues = [Queue(name) for name in os.environ["QUEUES"].split(",")]
