"""Shared table of invalid ScalingPolicy specs, one broken rule each (the valid ones: tests/valid_specs.py).

Used by the unit tests (pydantic model, generated CRD schema) and by the cluster
tests, which apply each invalid spec to a real API server. Each invalid case is
``(case_id, spec, expected)`` where ``expected`` is a substring that both the
pydantic error (``scalekeeper.model.error_messages``: ``spec.<path>: <message>``)
and the API server's rejection message contain. They are field paths such as
``web.behavior.scaleUp.selectPolicy`` or ``workers[0].maxReplicas``, spelled as
the API server prints them.

Cases whose kind is ``unknown-field`` are rejected by the API server only with
strict field validation (``kubectl`` default, or ``fieldValidation=Strict`` on
the request); without it the server silently prunes the field.
"""

from __future__ import annotations

import copy
from typing import Any

from tests.valid_specs import INT32_MAX, WEB_ONLY, Spec, budget, pod_template, read_replicas, web, worker

# The words both the model and the API server use for two tiers of one policy on one workload.
NAMED_TWICE = "must not name a Deployment another tier of the policy sizes"


def with_web(**changes: Any) -> Spec:
    w = web()
    w.update(changes)
    return {"web": w}


def without(section: Spec, *keys: str) -> Spec:
    out = copy.deepcopy(section)
    for key in keys:
        del out[key]
    return out


def with_worker(**changes: Any) -> Spec:
    w = worker()
    w.update(changes)
    return {"workers": [w]}


def with_replicas(**changes: Any) -> Spec:
    r = read_replicas()
    r.update(changes)
    return {"readReplicas": r}


def with_budget(**changes: Any) -> Spec:
    return {"web": web(), "connectionBudget": {**budget(), **changes}}


def with_behavior(direction: str, **rules: Any) -> Spec:
    return with_web(behavior={direction: rules})


def policy(type_: str = "Percent", value: Any = 100, period: Any = 15) -> Spec:
    return {"type": type_, "value": value, "periodSeconds": period}


# (case id, spec, expected substring, kind). kind is "schema" (bounds, enums,
# types, required: checked by the generated OpenAPI schema), "unknown-field", or
# "cel" (cross-field: checked by the CRD's x-kubernetes-validations).
INVALID_CASES: list[tuple[str, Spec, str, str]] = [
    # ----- top level
    ("mode-enum", {**WEB_ONLY, "mode": "Auto"}, "spec.mode", "schema"),
    ("interval-zero", {**WEB_ONLY, "intervalSeconds": 0}, "spec.intervalSeconds", "schema"),
    ("interval-too-long", {**WEB_ONLY, "intervalSeconds": 3601}, "spec.intervalSeconds", "schema"),
    ("interval-string", {**WEB_ONLY, "intervalSeconds": "5"}, "spec.intervalSeconds", "schema"),
    ("unknown-top-field", {**WEB_ONLY, "webb": {}}, "spec.webb", "unknown-field"),
    # ----- web
    ("web-unknown-field", with_web(replicas=3), "spec.web.replicas", "unknown-field"),
    ("web-deployment-missing", {"web": without(web(), "deployment")}, "spec.web.deployment", "schema"),
    ("web-deployment-bad-name", with_web(deployment="Web_App"), "spec.web.deployment", "schema"),
    ("web-min-zero", with_web(minReplicas=0), "spec.web.minReplicas", "schema"),
    ("web-max-missing", {"web": without(web(), "maxReplicas")}, "spec.web.maxReplicas", "schema"),
    ("web-max-string", with_web(maxReplicas="10"), "spec.web.maxReplicas", "schema"),
    ("web-cpu-over-100", with_web(cpuUtilization=101), "spec.web.cpuUtilization", "schema"),
    ("web-memory-zero", with_web(memoryUtilization=0), "spec.web.memoryUtilization", "schema"),
    (
        "web-request-rate-per-replica-zero",
        with_web(requestRate={"query": "sum(rate(http_requests_total[1m]))", "perReplica": 0}),
        "spec.web.requestRate.perReplica",
        "schema",
    ),
    (
        "web-request-rate-query-empty",
        with_web(requestRate={"query": "", "perReplica": 10}),
        "spec.web.requestRate.query",
        "schema",
    ),
    # ----- behavior
    (
        "behavior-window-too-long",
        with_behavior("scaleDown", stabilizationWindowSeconds=3601),
        "spec.web.behavior.scaleDown.stabilizationWindowSeconds",
        "schema",
    ),
    (
        "behavior-select-policy-enum",
        with_behavior("scaleUp", selectPolicy="Maximum"),
        "spec.web.behavior.scaleUp.selectPolicy",
        "schema",
    ),
    (
        "behavior-policy-type-enum",
        with_behavior("scaleUp", policies=[policy("Replicas", 2)]),
        "spec.web.behavior.scaleUp.policies[0].type",
        "schema",
    ),
    (
        "behavior-policy-value-zero",
        with_behavior("scaleUp", policies=[policy("Pods", 0)]),
        "spec.web.behavior.scaleUp.policies[0].value",
        "schema",
    ),
    (
        "behavior-period-too-long",
        with_behavior("scaleDown", policies=[policy("Pods", 1, 1801)]),
        "spec.web.behavior.scaleDown.policies[0].periodSeconds",
        "schema",
    ),
    (
        "behavior-period-zero",
        with_behavior("scaleUp", policies=[policy("Pods", 1, 0)]),
        "spec.web.behavior.scaleUp.policies[0].periodSeconds",
        "schema",
    ),
    (
        "behavior-policies-empty",
        with_behavior("scaleDown", policies=[]),
        "spec.web.behavior.scaleDown.policies",
        "schema",
    ),
    (
        "behavior-too-many-policies",
        with_behavior("scaleUp", policies=[policy("Pods", i + 1) for i in range(11)]),
        "spec.web.behavior.scaleUp.policies",
        "schema",
    ),
    (
        "behavior-tolerance-over-1",
        with_web(behavior={"tolerance": 1.5}),
        "spec.web.behavior.tolerance",
        "schema",
    ),
    (
        "behavior-scale-down-delay-negative",
        with_web(behavior={"scaleDownDelaySeconds": -1}),
        "spec.web.behavior.scaleDownDelaySeconds",
        "schema",
    ),
    (
        "behavior-unknown-field",
        with_behavior("scaleUp", window=30),
        "spec.web.behavior.scaleUp.window",
        "unknown-field",
    ),
    (
        "behavior-scale-down-percent-over-100",
        with_behavior("scaleDown", policies=[policy("Percent", 150)]),
        "spec.web.behavior.scaleDown.policies",
        "cel",
    ),
    (
        "behavior-scale-up-percent-over-1000",
        with_behavior("scaleUp", policies=[policy("Percent", 1001)]),
        "spec.web.behavior.scaleUp.policies",
        "cel",
    ),
    # ----- workers
    ("worker-queue-missing", {"workers": [without(worker(), "queue")]}, "spec.workers[0].queue", "schema"),
    ("worker-queue-empty", with_worker(queue=""), "spec.workers[0].queue", "schema"),
    ("worker-max-zero", with_worker(maxReplicas=0), "spec.workers[0].maxReplicas", "schema"),
    ("worker-min-negative", with_worker(minReplicas=-1), "spec.workers[0].minReplicas", "schema"),
    ("worker-tasks-zero", with_worker(tasksPerWorker=0), "spec.workers[0].tasksPerWorker", "schema"),
    ("worker-drain-zero", with_worker(drainSeconds=0), "spec.workers[0].drainSeconds", "schema"),
    (
        "worker-forecast-season-short",
        with_worker(forecast={"seasonSeconds": 30}),
        "spec.workers[0].forecast.seasonSeconds",
        "schema",
    ),
    (
        "worker-forecast-lead-not-below-season",
        with_worker(forecast={"seasonSeconds": 600, "leadSeconds": 600}),
        "spec.workers[0].forecast.leadSeconds",
        "cel",
    ),
    (
        "replicas-forecast-season-missing",
        with_replicas(
            metric={"query": "sum(rate(pg_stat_database_xact_commit[1m]))", "perReplica": 500, "forecast": {}}
        ),
        "spec.readReplicas.metric.forecast.seasonSeconds",
        "schema",
    ),
    ("worker-activation-zero", with_worker(activationTasks=0), "spec.workers[0].activationTasks", "schema"),
    ("worker-concurrency-zero", with_worker(concurrency=0), "spec.workers[0].concurrency", "schema"),
    (
        "worker-prefetch-zero",
        with_worker(prefetchMultiplier=0),
        "spec.workers[0].prefetchMultiplier",
        "schema",
    ),
    (
        "worker-cooldown-negative",
        with_worker(cooldownSeconds=-5),
        "spec.workers[0].cooldownSeconds",
        "schema",
    ),
    (
        "worker-metrics-unknown-field",
        with_worker(metrics={"queued": "sum(x)"}),
        "spec.workers[0].metrics.queued",
        "unknown-field",
    ),
    (
        "worker-metrics-preset-enum",
        with_worker(metrics={"preset": "flower"}),
        "spec.workers[0].metrics.preset",
        "schema",
    ),
    ("worker-metrics-app-empty", with_worker(metrics={"app": ""}), "spec.workers[0].metrics.app", "schema"),
    (
        "worker-metrics-app-too-long",
        with_worker(metrics={"app": "a" * 254}),
        "spec.workers[0].metrics.app",
        "schema",
    ),
    (
        "worker-template-not-object",
        {"workers": [{**without(worker(), "deployment"), "template": ["nginx"]}]},
        "spec.workers[0].template",
        "schema",
    ),
    ("workers-too-many", {"workers": [worker(f"q{i}") for i in range(51)]}, "spec.workers", "schema"),
    (
        "worker-scale-down-percent-over-100",
        with_worker(behavior={"scaleDown": {"policies": [policy("Percent", 101)]}}),
        "spec.workers[0].behavior.scaleDown.policies",
        "cel",
    ),
    # ----- read replicas
    (
        "replicas-target-name-missing",
        with_replicas(target={"apiVersion": "apps/v1", "kind": "StatefulSet"}),
        "spec.readReplicas.target.name",
        "schema",
    ),
    (
        "replicas-path-malformed",
        with_replicas(replicasPath="spec..instances"),
        "spec.readReplicas.replicasPath",
        "schema",
    ),
    (
        "replicas-per-replica-negative",
        with_replicas(metric={"query": "sum(pg_stat_activity_count)", "perReplica": -1}),
        "spec.readReplicas.metric.perReplica",
        "schema",
    ),
    (
        "replicas-metric-missing",
        {"readReplicas": without(read_replicas(), "metric")},
        "spec.readReplicas.metric",
        "schema",
    ),
    # ----- connection budget
    ("budget-max-zero", with_budget(maxConnections=0), "spec.connectionBudget.maxConnections", "schema"),
    ("budget-web-pool-negative", with_budget(webPoolSize=-1), "spec.connectionBudget.webPoolSize", "schema"),
    # ----- cross-field rules (CEL in the CRD, model validators in pydantic)
    ("no-target-empty-spec", {}, "at least one of web, workers, readReplicas", "cel"),
    ("no-target-empty-workers", {"workers": []}, "at least one of web, workers, readReplicas", "cel"),
    ("web-min-above-max", with_web(minReplicas=11), "spec.web.minReplicas", "cel"),
    (
        "web-no-metric",
        {"web": without(web(), "cpuUtilization")},
        "spec.web.cpuUtilization",
        "cel",
    ),
    ("worker-min-above-max", with_worker(minReplicas=6), "spec.workers[0].minReplicas", "cel"),
    (
        "worker-deployment-and-template",
        with_worker(template=pod_template()),
        "spec.workers[0].deployment",
        "cel",
    ),
    (
        "worker-neither-deployment-nor-template",
        {"workers": [without(worker(), "deployment")]},
        "spec.workers[0].deployment",
        "cel",
    ),
    (
        "worker-no-load-target",
        {"workers": [without(worker(), "tasksPerWorker")]},
        "spec.workers[0].tasksPerWorker",
        "cel",
    ),
    (
        "worker-preset-without-arrivals-drains-without-arrival-rate",
        with_worker(drainSeconds=60, metrics={"preset": "celery-redis-prometheus"}),
        "spec.workers[0].metrics.arrivalRate",
        "cel",
    ),
    ("worker-duplicate-queue", {"workers": [worker("video"), worker("video")]}, "queue", "cel"),
    # ----- one workload, one tier
    (
        "worker-deployment-is-the-web-one",
        {"web": web(), "workers": [{**worker(), "deployment": "web"}]},
        NAMED_TWICE,
        "cel",
    ),
    (
        "workers-share-a-deployment",
        {"workers": [worker("video"), {**worker("emails"), "deployment": "video-worker"}]},
        NAMED_TWICE,
        "cel",
    ),
    (
        "replicas-target-is-the-web-deployment",
        {
            "web": web(),
            **with_replicas(target={"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}),
        },
        NAMED_TWICE,
        "cel",
    ),
    # ----- counts past int32, blank queries, an apiVersion without version, a template that is no pod's
    ("web-max-over-int32", with_web(maxReplicas=INT32_MAX + 1), "spec.web.maxReplicas", "schema"),
    (
        "worker-tasks-over-int32",
        with_worker(tasksPerWorker=INT32_MAX + 1),
        "spec.workers[0].tasksPerWorker",
        "schema",
    ),
    (
        "budget-max-connections-over-int32",
        with_budget(maxConnections=INT32_MAX + 1),
        "spec.connectionBudget.maxConnections",
        "schema",
    ),
    (
        "behavior-policy-value-over-int32",
        with_behavior("scaleUp", policies=[policy("Pods", INT32_MAX + 1)]),
        "spec.web.behavior.scaleUp.policies[0].value",
        "schema",
    ),
    (
        "web-request-rate-query-blank",
        with_web(requestRate={"query": " \n\t ", "perReplica": 10}),
        "spec.web.requestRate.query",
        "schema",
    ),
    (
        "replicas-api-version-without-version",
        with_replicas(target={"apiVersion": "postgresql.cnpg.io", "kind": "Cluster", "name": "pg"}),
        "spec.readReplicas.target.apiVersion",
        "schema",
    ),
    (
        "worker-template-containers-at-the-wrong-level",
        {
            "workers": [
                {**without(worker(), "deployment"), "template": {"containers": [{"name": "w", "image": "i"}]}}
            ]
        },
        "spec.workers[0].template.spec",
        "schema",
    ),
    (
        "worker-template-metadata-not-an-object",
        {"workers": [{**without(worker(), "deployment"), "template": {**pod_template(), "metadata": 0}}]},
        "spec.workers[0].template.metadata",
        "schema",
    ),
    (
        "worker-template-label-not-a-string",
        {
            "workers": [
                {
                    **without(worker(), "deployment"),
                    "template": {**pod_template(), "metadata": {"labels": {"a": 1}}},
                }
            ]
        },
        "spec.workers[0].template.metadata.labels",
        "schema",
    ),
    (
        "worker-template-without-containers",
        {"workers": [{**without(worker(), "deployment"), "template": {"spec": {"containers": []}}}]},
        "spec.workers[0].template.spec.containers",
        "schema",
    ),
    (
        "worker-template-container-without-image",
        {
            "workers": [
                {**without(worker(), "deployment"), "template": {"spec": {"containers": [{"name": "w"}]}}}
            ]
        },
        "spec.workers[0].template.spec.containers[0].image",
        "schema",
    ),
    ("replicas-min-above-max", with_replicas(minReplicas=6), "spec.readReplicas.minReplicas", "cel"),
    ("replicas-floor-below-min", with_replicas(floor=0), "spec.readReplicas.floor", "cel"),
    ("replicas-floor-above-max", with_replicas(floor=6), "spec.readReplicas.floor", "cel"),
    (
        "budget-reserved-not-below-max",
        with_budget(reserved=200),
        "spec.connectionBudget.reserved",
        "cel",
    ),
]

# The shape the brief names: (case id, spec, expected field path substring).
INVALID_SPECS: list[tuple[str, Spec, str]] = [
    (case, spec, expected) for case, spec, expected, _ in INVALID_CASES
]
