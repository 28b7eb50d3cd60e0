"""Reaction time beside a peer: scalekeeper and KEDA sizing two Deployments from one signal, same steps.

    PYTHONPATH=operator .venv/bin/python -m bench.reaction_peer [--signal prometheus|redis-list|web]
        [--steps 20]

Needs `make cluster-up`, `make image` and KEDA installed (`hack/keda.sh build install`); `--signal redis-list`
also the demo and exporter images (`hack/demo-image.sh`, `hack/exporter-image.sh`). In one namespace
<--namespace-prefix><random>: a signal and two Deployments. `target` is sized by a ScalingPolicy
(intervalSeconds 1, no stabilization, no rate limit; the operator runs as a local process), `target-keda` by a
KEDA ScaledObject; both size as ceil(value / 10), min 1, max 10. The signal (--signal):

  prometheus   bench.reaction's gauge exporter (value set with kubectl exec). The policy's readReplicas
               metric and KEDA's prometheus trigger (threshold 10, AverageValue) run the same query.
  redis-list   the length of a real Celery queue list in the cluster's Redis (the demo's broker), under a
               key prefix unique to the run. The demo's producer publishes 100 demo.work tasks to queue
               `video` once; a step then LPUSHes some of those messages back or RPOPs them (what kombu's
               producer and consumer do), one Redis command, and no consumer runs, so the length stays
               where the step put it. scalekeeper reads it as a user would: the demo's queue exporter
               (rendered by manifests/examples/demo/render.py with the same key prefix), scraped by the
               cluster's Prometheus, and a ScalingPolicy worker on celery_queue_waiting_tasks
               (tasksPerWorker 10). KEDA reads LLEN itself with its redis trigger (listLength 10).
  web          the gauge as prometheus, read by the policy's web tier as its request rate (perReplica 10):
               the operator raises the floor of the HPA it owns, then the Deployment itself. Its falls are
               the HPA's (on CPU, at its sync), not the operator's: the web target is timed on rises only,
               and after a fall the bench puts it back at the lowered floor once the operator lowered the
               HPA's minReplicas. Both sides' tables are over the rises alone.

Two KEDA settings, one after the other; scalekeeper is measured on every step of both:

  1. KEDA defaults: pollingInterval 30, cooldownPeriod 300, the HPA's default behavior. Its scale-down
     waits out the default 300 s stabilization window, so steps alternating 30/70 would cost over 5 min
     each: this setting is measured on scale-up steps only, a ladder 30 -> 40 -> ... -> 100 (one replica a
     step), then on one scale-down step 100 -> 30, reported on its own.
  2. KEDA at its fastest: pollingInterval 1 and horizontalPodAutoscalerConfig.behavior with
     stabilizationWindowSeconds 0 and a 100 %/1 s policy both ways, plus a 100 pods/1 s policy (selectPolicy
     Max): 100 % alone caps 3 -> 7 at 6 per HPA sync. --steps steps alternating 30/70 as bench.reaction.

For each step: written = the instant the write returned (kubectl exec, or the Redis command), queryable =
the first instant Prometheus answers the new value (polled every 50 ms), seen = the watch event showing the
target's new spec.replicas. With prometheus both targets are timed from queryable (both read Prometheus).
With redis-list KEDA is timed from written (it reads Redis), scalekeeper from written and from queryable,
and both ratios are printed. A ScaledObject scales 1..N through an HPA, which reads the metric only on the
HPA controller's sync loop (kube-controller-manager --horizontal-pod-autoscaler-sync-period, 15 s by
default; read from its static pod). The gap between steps is random, 0.5 s to 0.5 s + that period, so steps
fall at random phases of the loop (a fixed gap would lock on to it). Prints p50/p95/max per row and setting,
the p95 ratios, the machine and the sync period; writes out/reaction-peer[-redis-list].png and .json. One
run stays under 20 minutes (--budget).
"""
