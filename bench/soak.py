"""Soak: many ScalingPolicies under a load that keeps changing, for a long time, on the kind cluster.

    .venv/bin/python -m bench.soak [--policies 500] [--minutes 30] [--interval 15]

Each policy sizes its own scalable object between 1 and 6 replicas from its own series. The objects are
instances of a small CRD with a `/scale` subresource (`ScaleTarget`, like a database operator's cluster
object), so every scale write is a real API write and no pod is started: 500 Deployments would need
thousands of pods on one node. One exporter pod serves one series per policy, each a sine wave of its own
phase (period --period-seconds), computed at every scrape; Prometheus scrapes it every second.

One operator process (local, as `make test` runs it) serves the namespace. Every 30 s the script samples
its RSS and CPU time; at the end it reads the operator's log for every decision and error. It prints:
RSS first/last and the least-squares slope after a warm-up, CPU seconds per policy per cycle, scale writes,
errors and their kinds, and for each policy the longest gap between two decisions (the aim: no gap longer
than twice the interval). Needs `make cluster-up`.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

from bench.common import (
    LOGS,
    apply_policy_crd,
    cluster_env,
    delete_lease,
    describe_machine,
    free_port,
    kubectl,
    operator_env,
    start_operator_process,
    stop_process,
)
from bench.proc import cpu_seconds, proc_status, status_mib
from scalekeeper.cli import Parser

# Outside scalekeeper-system, which the benches only read.
LEASE_NAMESPACE = "default"
GROUP, VERSION, KIND, PLURAL = "bench.scalekeeper.dev", "v1", "ScaleTarget", "scaletargets"
PER_REPLICA = 10.0

TARGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {"kind": KIND, "plural": PLURAL, "singular": "scaletarget", "listKind": f"{KIND}List"},
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}
                },
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                        },
                    }
                },
            }
        ],
    },
}

# One series per policy, a sine wave between 0.5 and 5.5 replicas' worth, phase spread over the policies.
EXPORTER = """
import http.server, math, os, time
N = int(os.environ["POLICIES"]); PERIOD = float(os.environ["PERIOD"]); PER = float(os.environ["PER_REPLICA"])
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        t = time.time()
        lines = ["# TYPE soak_load gauge"]
        for i in range(N):
            v = PER * (3.0 + 2.5 * math.sin(2 * math.pi * (t / PERIOD + i / N)))
            lines.append('soak_load{policy="p-%05d"} %.3f' % (i, v))
        body = ("\\n".join(lines) + "\\n").encode()
        self.send_response(200); self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("", 9100), H).serve_forever()
"""


def rss_mb(pid: int) -> float:
    return status_mib(proc_status(pid), "VmRSS")


def slope_per_hour(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MB) samples, in MB per hour."""
    n = len(samples)
    if n < 2:
        return math.nan
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return cov / var * 3600 if var else math.nan


def metric_total(port: int, name: str, label: str = "") -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and label in line and not line.startswith("#")
    )


def policy(ns: str, index: int, interval: int) -> dict[str, Any]:
    name = f"p-{index:05d}"
    return {
        "apiVersion": "scalekeeper.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": name},
        "spec": {
            "intervalSeconds": interval,
            "readReplicas": {
                "target": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": f"t-{index:05d}"},
                "minReplicas": 1,
                "maxReplicas": 6,
                "metric": {
                    "query": f'soak_load{{namespace="{ns}",policy="{name}"}}',
                    "perReplica": PER_REPLICA,
                },
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}},
            },
        },
    }


@contextmanager
def operator_process(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_operator_process(env, log_path)
    try:
        yield proc
    finally:
        stop_process(proc, timeout=30)


def read_log(path: Path) -> tuple[dict[str, list[float]], Counter[str], Counter[str]]:
    """Decision times per policy, and error and warning lines by message."""
    decisions: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    warnings: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback" in line:
                errors["traceback"] += 1
            continue
        if entry.get("message") == "decision":
            when = datetime.fromisoformat(entry["timestamp"]).timestamp()
            decisions.setdefault(entry["policy"], []).append(when)
        elif (
            str(entry.get("message", "")).startswith("Request attempt #") and "will retry" in entry["message"]
        ):
            # kopf's own API client retrying (a 429 when many new policies get their finalizer at once):
            # a retry is not an error; a request that failed for good is logged as one.
            warnings["kopf retried an API request: " + entry["message"].split(" -> ")[-1][:60]] += 1
        elif entry.get("severity") in ("error", "critical") or entry.get("message") == "cycle failed":
            errors[str(entry.get("message"))[:120]] += 1
        elif entry.get("severity") == "warning":
            warnings[str(entry.get("message"))[:120]] += 1
    return decisions, errors, warnings


def main() -> int:
    parser = Parser(prog="python -m bench.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=int, default=15, help="each policy's intervalSeconds")
    parser.add_argument("--period-seconds", type=float, default=600.0, help="period of the load waves")
    parser.add_argument("--warmup-minutes", type=float, default=3.0, help="left out of the RSS slope")
    args = parser.parse_args()
    started = time.time()

    env = cluster_env()
    kubeconfig, prom = env["KUBECONFIG"], env["PROMETHEUS_URL"]
    image = f"{env['SCALEKEEPER_REGISTRY']}/scalekeeper:dev"
    api = config.new_client_from_config(config_file=kubeconfig)
    core, apps, objects = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    machine = describe_machine(api)
    ns = f"soak-{uuid.uuid4().hex[:6]}"
    lease = f"lease-{ns}"
    log_path = LOGS / "bench-soak-operator.log"
    kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=json.dumps(TARGET_CRD))
    kubectl(kubeconfig, "wait", "--for=condition=Established", f"crd/{PLURAL}.{GROUP}", "--timeout=60s")
    apply_policy_crd(kubeconfig)
    core.create_namespace({"metadata": {"name": ns}})
    metrics_port = free_port()
    samples: list[tuple[float, float, float]] = []  # (t, rss MB, cpu s)
    try:
        apps.create_namespaced_deployment(
            ns,
            {
                "metadata": {"name": "exporter"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "exporter"}},
                    "template": {
                        "metadata": {
                            "labels": {"app": "exporter"},
                            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9100"},
                        },
                        "spec": {
                            "terminationGracePeriodSeconds": 1,
                            "containers": [
                                {
                                    "name": "c",
                                    "image": image,
                                    "command": ["python3", "-c", EXPORTER],
                                    "env": [
                                        {"name": "POLICIES", "value": str(args.policies)},
                                        {"name": "PERIOD", "value": str(args.period_seconds)},
                                        {"name": "PER_REPLICA", "value": str(PER_REPLICA)},
                                    ],
                                }
                            ],
                        },
                    },
                },
            },
        )
        for i in range(args.policies):
            objects.create_namespaced_custom_object(
                GROUP,
                VERSION,
                ns,
                PLURAL,
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "metadata": {"name": f"t-{i:05d}"},
                    "spec": {"replicas": 1},
                },
            )
            objects.create_namespaced_custom_object(
                "scalekeeper.dev", "v1alpha1", ns, "scalingpolicies", policy(ns, i, args.interval)
            )
        kubectl(kubeconfig, "-n", ns, "rollout", "status", "deploy/exporter", "--timeout=180s")
        print(f"{args.policies} policies and targets in {ns} after {time.time() - started:.0f} s", flush=True)

        soak_env = operator_env(
            kubeconfig=kubeconfig,
            prometheus=prom,
            namespaces=ns,
            lease=lease,
            lease_namespace=LEASE_NAMESPACE,
            identity="soak",
            metrics_port=metrics_port,
            # every cycle's decision line: the gaps and evaluations are read from them
            extra={"SCALEKEEPER_LOG_DECISIONS": "all"},
        )
        with operator_process(soak_env, log_path) as proc:
            t0 = time.time()
            end = t0 + args.minutes * 60
            time.sleep(5)  # past the interpreter's start, so the first RSS sample is the operator's
            while time.time() < end:
                if proc.poll() is not None:
                    raise RuntimeError(f"the operator exited with {proc.returncode}; see {log_path}")
                samples.append((time.time() - t0, rss_mb(proc.pid), cpu_seconds(proc.pid)))
                print(
                    f"  {samples[-1][0] / 60:5.1f} min  RSS {samples[-1][1]:6.1f} MB  "
                    f"CPU {samples[-1][2]:7.1f} s",
                    flush=True,
                )
                time.sleep(min(30.0, max(0.0, end - time.time())))
            samples.append((time.time() - t0, rss_mb(proc.pid), cpu_seconds(proc.pid)))
            scaled = metric_total(metrics_port, "scalekeeper_scale_writes_total", 'outcome="scaled"')
            conflicts = metric_total(metrics_port, "scalekeeper_scale_writes_total", 'outcome="conflict"')
            write_errors = metric_total(metrics_port, "scalekeeper_scale_writes_total", 'outcome="error"')
            cycles = metric_total(metrics_port, "scalekeeper_reconcile_seconds_count")
            status_ok = metric_total(
                metrics_port, "scalekeeper_scale_writes_total", 'kind="status",outcome="ok"'
            )
            deferred = metric_total(
                metrics_port, "scalekeeper_scale_writes_total", 'kind="status",outcome="deferred"'
            )
            events = metric_total(metrics_port, "scalekeeper_scale_writes_total", 'kind="Event"')
            # Release the policies while the operator still runs: it removes their finalizers.
            for i in range(args.policies):
                objects.delete_namespaced_custom_object(
                    "scalekeeper.dev", "v1alpha1", ns, "scalingpolicies", f"p-{i:05d}"
                )
            deadline = time.time() + 300
            while (
                time.time() < deadline
                and objects.list_namespaced_custom_object(
                    "scalekeeper.dev", "v1alpha1", ns, "scalingpolicies", limit=1
                )["items"]
            ):
                time.sleep(2)
    finally:
        core.delete_namespace(ns)
        # The operator is stopped by now: it released its lease, which would stay behind.
        delete_lease(kubeconfig, LEASE_NAMESPACE, lease)

    decisions, errors, warnings = read_log(log_path)
    ran = samples[-1][0]
    steady = [(t, rss) for t, rss, _ in samples if t >= args.warmup_minutes * 60]
    gaps = {
        p: max((b - a for a, b in itertools.pairwise(ts)), default=math.inf) for p, ts in decisions.items()
    }
    # The first decision comes when the daemon starts; the window ends when the run does.
    late = sorted(g for g in gaps.values() if g > 2 * args.interval)
    cpu = samples[-1][2] - samples[0][2]
    print()
    print(f"machine: {machine}")
    print(
        f"soak: {args.policies} policies, interval {args.interval} s, {ran / 60:.1f} min, "
        f"load period {args.period_seconds:.0f} s"
    )
    print()
    print("| figure | value |")
    print("| --- | ---: |")
    print(f"| policies with at least one decision | {len(decisions)} of {args.policies} |")
    print(
        f"| cycles (all policies) | {cycles:.0f} "
        f"({cycles / max(1, args.policies) / (ran / args.interval):.0%} of the timer's) |"
    )
    print(f"| RSS first / last | {samples[0][1]:.1f} / {samples[-1][1]:.1f} MB |")
    print(f"| RSS slope after {args.warmup_minutes:g} min warm-up | {slope_per_hour(steady):+.1f} MB/hour |")
    print(
        f"| CPU | {cpu:.0f} s ({cpu / ran:.2f} cores; "
        f"{cpu / max(1.0, cycles) * 1000:.1f} ms per policy per cycle) |"
    )
    print(f"| scale writes / conflicts / failed | {scaled:.0f} / {conflicts:.0f} / {write_errors:.0f} |")
    print(
        f"| longest gap between two decisions of one policy | {max(gaps.values(), default=math.nan):.1f} s |"
    )
    print(f"| policies with a gap over 2 x interval | {len(late)} |")
    print(
        "| status writes / deferred (429, 5xx) / Events posted | "
        f"{status_ok:.0f} / {deferred:.0f} / {events:.0f} |"
    )
    print(f"| error lines in the operator log | {sum(errors.values())} |")
    for message, count in errors.most_common(5):
        print(f"|   {message} | {count} |")
    print(f"| warning lines in the operator log | {sum(warnings.values())} |")
    for message, count in warnings.most_common(5):
        print(f"|   {message} | {count} |")
    print()
    print(
        f"reproduce: .venv/bin/python -m bench.soak --policies {args.policies} --minutes {args.minutes:g} "
        f"--interval {args.interval}"
    )
    print(f"operator log: {log_path}; wall time {time.time() - started:.0f} s")
    return 0 if not late and not errors and len(decisions) == args.policies else 1


if __name__ == "__main__":
    sys.exit(main())
