"""Reaction time on the kind cluster: from a new metric value being queryable in Prometheus to the scale
write being visible through a watch on the target.

    .venv/bin/python -m bench.reaction [--steps 20] [--interval 1] [--png out/reaction.png]

A gauge exporter pod serves a value the script sets (kubectl exec); a ScalingPolicy sizes a Deployment as
ceil(value / 10) with no stabilization and no rate limit, so every step is one write. Each step alternates
between two levels. For each: t0 = first instant Prometheus answers the new value (polled every 50 ms),
t1 = the watch event showing the Deployment's new spec.replicas. Prints p50/p95/max of t1 - t0 and of
t1 - (value written), and the machine. Needs `make cluster-up`; runs the operator as a local process.
bench.reaction_peer reuses the pieces below to measure KEDA beside it.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from bench.common import (
    ROOT,
    apply_object,
    cluster_env,
    delete_lease,
    describe_machine,
    kubectl,
    percentile,
    prometheus_value,
    run_kubectl,
    start_local_operator,
    stop_process,
)

pct = percentile

LEASE_NAMESPACE = "scalekeeper-system"

EXPORTER = (
    "import http.server,os\n"
    "open('/load/value','w').write('10')\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "  def do_GET(self):\n"
    "    b=('# TYPE bench_load gauge\\nbench_load '+open('/load/value').read().strip()+'\\n').encode()\n"
    "    self.send_response(200); self.send_header('Content-Type','text/plain; version=0.0.4')\n"
    "    self.end_headers(); self.wfile.write(b)\n"
    "  def log_message(self,*a): pass\n"
    "http.server.HTTPServer(('',9100),H).serve_forever()\n"
)
SLEEPER = ["python3", "-c", "import time; time.sleep(10**6)"]
# No stabilization and no rate limit: every step is one write.
FAST = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [{"type": "Pods", "value": 100, "periodSeconds": 1}],
}


def lease_name(ns: str) -> str:
    """The lease of the operator start_operator runs for `ns`: this run's alone."""
    return f"bench-{ns}"


def create_deployment(
    apps: client.AppsV1Api, ns: str, name: str, image: str, cmd: list[str], exporter: bool = False
) -> None:
    pod: dict[str, Any] = {
        "containers": [{"name": "c", "image": image, "command": cmd}],
        "terminationGracePeriodSeconds": 1,
    }
    annotations = {}
    if exporter:
        annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": "9100"}
        pod["containers"][0]["volumeMounts"] = [{"name": "load", "mountPath": "/load"}]
        pod["volumes"] = [{"name": "load", "emptyDir": {}}]
    apps.create_namespaced_deployment(
        ns,
        {
            "metadata": {"name": name},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}, "annotations": annotations}, "spec": pod},
            },
        },
    )


def start_exporter(apps: client.AppsV1Api, kubeconfig: str, prom: str, ns: str, image: str) -> str:
    """The gauge exporter, up and scraped; returns the query that reads its value."""
    create_deployment(apps, ns, "exporter", image, ["python3", "-c", EXPORTER], exporter=True)
    kubectl(kubeconfig, "-n", ns, "rollout", "status", "deploy/exporter", "--timeout=120s")
    query = f'bench_load{{namespace="{ns}"}}'
    while prometheus_value(prom, query) is None:
        time.sleep(0.2)
    return query


def set_value(kubeconfig: str, ns: str, value: int) -> None:
    kubectl(kubeconfig, "-n", ns, "exec", "deploy/exporter", "--", "sh", "-c", f"echo {value} > /load/value")


def wait_queryable(prom: str, query: str, value: float) -> float:
    while prometheus_value(prom, query) != value:
        time.sleep(0.05)
    return time.time()


def scaling_policy(query: str, interval: int, target: str = "target") -> dict[str, Any]:
    return {
        "apiVersion": "scalekeeper.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "bench"},
        "spec": {
            "intervalSeconds": interval,
            "readReplicas": {
                "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "minReplicas": 1,
                "maxReplicas": 10,
                "metric": {"query": query, "perReplica": 10},
                "behavior": {"scaleUp": FAST, "scaleDown": FAST, "tolerance": 0.0},
            },
        },
    }


def start_operator(kubeconfig: str, prom: str, ns: str, log_name: str) -> subprocess.Popen[bytes]:
    """The operator as a local process, watching only `ns`, under a lease of its own."""
    return start_local_operator(
        kubeconfig,
        prom,
        ns,
        lease=lease_name(ns),
        lease_namespace=LEASE_NAMESPACE,
        identity="bench",
        log_name=log_name,
        extra={"SCALEKEEPER_LOG_LEVEL": "WARNING"},
    )


def stop_operator(kubeconfig: str, ns: str, operator: subprocess.Popen[bytes] | None) -> None:
    # The policy goes first, while the operator can still drop its finalizer.
    run_kubectl(
        kubeconfig, "-n", ns, "delete", "scalingpolicy", "bench", "--ignore-not-found", "--timeout=30s"
    )
    if operator is not None:
        stop_process(operator, timeout=20)
    # Stopping the operator only releases its lease: the lease itself goes too.
    delete_lease(kubeconfig, LEASE_NAMESPACE, lease_name(ns))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--interval", type=int, default=1, help="the policy's intervalSeconds")
    parser.add_argument("--png", default=str(ROOT / "out" / "reaction.png"))
    args = parser.parse_args()

    env = cluster_env()
    kubeconfig, prom = env["KUBECONFIG"], env["PROMETHEUS_URL"]
    image = f"{env['SCALEKEEPER_REGISTRY']}/scalekeeper:dev"
    api = config.new_client_from_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    operator = None
    try:
        query = start_exporter(apps, kubeconfig, prom, ns, image)
        create_deployment(apps, ns, "target", image, SLEEPER)
        operator = start_operator(kubeconfig, prom, ns, "bench-reaction-operator.log")
        policy = scaling_policy(query, args.interval)
        apply_object(kubeconfig, ns, policy)

        seen: dict[int, float] = {}
        stop = threading.Event()

        def watch_target() -> None:
            w = watch.Watch()
            for event in w.stream(
                apps.list_namespaced_deployment,
                ns,
                field_selector="metadata.name=target",
                timeout_seconds=3600,
            ):
                seen.setdefault(int(event["object"].spec.replicas), time.time())
                if stop.is_set():
                    w.stop()

        threading.Thread(target=watch_target, daemon=True).start()
        levels = [(30, 3), (70, 7)]
        # settle at the first level
        set_value(kubeconfig, ns, 30)
        deadline = time.time() + 60
        while 3 not in seen and time.time() < deadline:
            time.sleep(0.1)
        rows = []
        for step in range(args.steps):
            value, replicas = levels[(step + 1) % 2]
            seen.pop(replicas, None)
            written = time.time()
            set_value(kubeconfig, ns, value)
            queryable = wait_queryable(prom, query, value)
            deadline = queryable + 60
            while replicas not in seen and time.time() < deadline:
                time.sleep(0.02)
            if replicas not in seen:
                print(f"step {step}: no scale to {replicas} within 60 s", file=sys.stderr)
                return 1
            rows.append((seen[replicas] - queryable, seen[replicas] - written, queryable - written))
            time.sleep(0.5)
        stop.set()
        react = [r[0] for r in rows]
        total = [r[1] for r in rows]
        scrape = [r[2] for r in rows]
        print(f"machine: {describe_machine(api)}")
        print(f"policy intervalSeconds={args.interval}, Prometheus scrape interval 1 s, {args.steps} steps")
        print(f"{'measure':44} {'p50':>7} {'p95':>7} {'max':>7}")
        for label, values in (
            ("queryable -> scale visible (operator)", react),
            ("value written -> queryable (scrape)", scrape),
            ("value written -> scale visible (end to end)", total),
        ):
            print(f"{label:44} {pct(values, 0.5):6.2f}s {pct(values, 0.95):6.2f}s {max(values):6.2f}s")
        print(f"mean operator reaction {statistics.mean(react):.2f}s")
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(8, 4))
            ax.plot(range(1, len(rows) + 1), react, "o-", label="queryable -> scale visible")
            ax.plot(range(1, len(rows) + 1), total, "s--", label="value written -> scale visible")
            ax.set_xlabel("step")
            ax.set_ylabel("seconds")
            ax.set_title(f"scalekeeper reaction time (intervalSeconds={args.interval}, scrape 1 s)")
            ax.grid(alpha=0.3)
            ax.legend()
            Path(args.png).parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(args.png, dpi=100, bbox_inches="tight")
            print(f"plot: {args.png}")
        except ImportError:
            pass
        return 0
    finally:
        stop_operator(kubeconfig, ns, operator)
        core.delete_namespace(ns)


if __name__ == "__main__":
    sys.exit(main())
