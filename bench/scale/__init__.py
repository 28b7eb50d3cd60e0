"""Cost at scale: one operator process sizing N ScalingPolicies on the kind cluster, nothing changing.

    PYTHONPATH=operator .venv/bin/python -m bench.scale [--sizes 100,300] [--namespaces 5] [--interval 15]

For each size: N policies spread over `--namespaces` namespaces `bench-scale-<run>-<k>`, each with a web
tier (its own Deployment, sized through the operator's HPA), three worker queues (existing Deployments,
minReplicas 0) and read replicas (a Deployment, minReplicas 0); `--fleet light`, for the largest fleets:
read replicas only, on a StatefulSet, one series a policy. Every target stays at 0 replicas and
every metric says 0, so nothing scales and no pod but the exporter's runs: what is measured is the cost of
looking. The metrics are real series (`bench_load{run,policy,metric}` = 0, one per policy and metric)
served by one exporter pod and scraped by the cluster's Prometheus; each policy's queries select its own.

Then ONE operator process (local, unchanged, its API requests counted by bench.counted_operator) is
started and measured: time until every policy was evaluated once (its "decision" log line for web); then
over a steady window of `--window-cycles` intervals: CPU seconds per policy cycle (/proc utime+stime, all
threads), RSS, API reads per cycle, writes per minute, Prometheus requests per cycle, and missed cycles (a
policy not evaluated for more than 2x its interval). At the largest size, py-spy records a profile over a
second window (`--profile-seconds`, 0 to skip). Prints markdown tables, the machine and the command, and
writes out/bench-scale.json and out/bench-scale.png.

Needs `make cluster-up` and `make image` (the exporter runs the operator image's python3). The cluster may
be shared: objects are created at most `--qps` per second, and every namespace this run made is deleted at
the end, on failure and on Ctrl-C too (the policies first, while the operator still removes its finalizer).
"""
