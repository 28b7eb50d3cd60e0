"""Prometheus exporter of Celery queues for scalekeeper: broker depth (Redis,
RabbitMQ) and Celery's own events."""

__version__ = "0.1.0"
