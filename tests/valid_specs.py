"""Shared table of valid ScalingPolicy specs, and the builders of one valid tier each that the invalid
specs (tests/invalid_specs.py) break one rule of.

Used by the unit tests (pydantic model, generated CRD schema, the engine at the int32 bounds) and by the
cluster tests, which apply each spec to a real API server: the model and the server must both take it.
"""

from __future__ import annotations

from typing import Any

Spec = dict[str, Any]


def web() -> Spec:
    return {"deployment": "web", "minReplicas": 2, "maxReplicas": 10, "cpuUtilization": 70}


def worker(queue: str = "video") -> Spec:
    return {"queue": queue, "deployment": f"{queue}-worker", "maxReplicas": 5, "tasksPerWorker": 10}


def read_replicas() -> Spec:
    return {
        "target": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "pg-replica"},
        "minReplicas": 1,
        "maxReplicas": 5,
        "metric": {"query": "sum(rate(pg_stat_database_xact_commit[1m]))", "perReplica": 500},
    }


def budget() -> Spec:
    return {"maxConnections": 200, "webPoolSize": 5, "workerPoolSize": 2}


def pod_template() -> Spec:
    return {
        "metadata": {"labels": {"app": "shop", "tier": "worker"}},
        "spec": {
            "containers": [
                {
                    "name": "worker",
                    "image": "shop:1.0",
                    "args": ["celery", "-A", "shop", "worker", "-Q", "emails"],
                }
            ]
        },
    }


# ----------------------------------------------------------------------- valid

WEB_ONLY: Spec = {"web": {"deployment": "web", "maxReplicas": 10, "cpuUtilization": 70}}

WORKERS_ONLY: Spec = {
    "workers": [{"queue": "video", "deployment": "video-worker", "maxReplicas": 5, "tasksPerWorker": 10}]
}

READ_REPLICAS_ONLY: Spec = {"readReplicas": read_replicas()}

FULL: Spec = {
    "mode": "DryRun",
    "intervalSeconds": 10,
    "web": {
        "deployment": "web",
        "minReplicas": 2,
        "maxReplicas": 20,
        "cpuUtilization": 70,
        "memoryUtilization": 80,
        "requestRate": {"query": 'sum(rate(http_requests_total{app="shop"}[1m]))', "perReplica": 50},
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": 30,
                "selectPolicy": "Max",
                "policies": [
                    {"type": "Percent", "value": 200, "periodSeconds": 60},
                    {"type": "Pods", "value": 4, "periodSeconds": 60},
                ],
            },
            "scaleDown": {"selectPolicy": "Min"},
            "tolerance": 0.05,
            "scaleDownDelaySeconds": 120,
            "cooldownSeconds": 30,
        },
    },
    "workers": [
        {
            "queue": "video",
            "deployment": "video-worker",
            "minReplicas": 1,
            "maxReplicas": 10,
            "tasksPerWorker": 20,
            "drainSeconds": 300,
            "activationTasks": 5,
            "concurrency": 4,
            "prefetchMultiplier": 1,
            "metrics": {
                "app": "shop",
                "waiting": 'sum(celery_queue_length{queue_name="<queue>"})',
                "completionRate": 'sum(rate(celery_task_succeeded_total{queue="<queue>"}[2m]))',
            },
            "cooldownSeconds": 600,
            "forecast": {"seasonSeconds": 604800, "leadSeconds": 600},
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
        },
        {
            "queue": "emails",
            "template": pod_template(),
            "maxReplicas": 3,
            "drainSeconds": 60,
            # The preset gives no arrival rate: drainSeconds needs this one.
            "metrics": {
                "preset": "celery-redis-prometheus",
                "arrivalRate": 'sum(rate(shop_tasks_published_total{queue="<queue>"}[1m]))',
            },
        },
        {
            "queue": "reports",
            "deployment": "reports-worker",
            "maxReplicas": 2,
            "tasksPerWorker": 5,
            "metrics": {"preset": "celery-redis-prometheus"},  # no drainSeconds: no arrival rate needed
        },
    ],
    "readReplicas": {
        "target": {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "name": "pg"},
        "replicasPath": "spec.instances",
        "minReplicas": 1,
        "maxReplicas": 5,
        "floor": 2,
        "metric": {
            "query": "sum(pg_stat_activity_count)",
            "perReplica": 80.5,
            "forecast": {"seasonSeconds": 86400},
        },
        "behavior": {"scaleDown": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]}},
    },
    "connectionBudget": {
        "maxConnections": 300,
        "webPoolSize": 5,
        "workerPoolSize": 2,
        "replicaMaxConnections": 100,
        "reserved": 10,
    },
}

INT32_MAX = 2**31 - 1

# Every count at the largest value an int32 field holds: the model and the API server both take it.
AT_THE_BOUNDS: Spec = {
    "web": {
        "deployment": "web",
        "minReplicas": INT32_MAX,
        "maxReplicas": INT32_MAX,
        "requestRate": {"query": "sum(rate(http_requests_total[1m]))", "perReplica": 1e300},
        "behavior": {"scaleUp": {"policies": [{"type": "Pods", "value": INT32_MAX, "periodSeconds": 15}]}},
    },
    "workers": [
        {
            "queue": "video",
            "deployment": "video-worker",
            "minReplicas": INT32_MAX,
            "maxReplicas": INT32_MAX,
            "tasksPerWorker": INT32_MAX,
            "activationTasks": INT32_MAX,
        }
    ],
    "readReplicas": {**read_replicas(), "minReplicas": 0, "maxReplicas": INT32_MAX, "floor": INT32_MAX},
    "connectionBudget": {
        "maxConnections": INT32_MAX,
        "webPoolSize": INT32_MAX,
        "workerPoolSize": INT32_MAX,
        "replicaMaxConnections": INT32_MAX,
        "reserved": INT32_MAX - 1,
    },
}

VALID_SPECS: list[tuple[str, Spec]] = [
    ("web-only", WEB_ONLY),
    ("workers-only", WORKERS_ONLY),
    ("read-replicas-only", READ_REPLICAS_ONLY),
    ("full", FULL),
    ("at-the-bounds", AT_THE_BOUNDS),
]
