"""Reaction time on the kind cluster: from a new metric value being queryable in Prometheus to the scale
write being visible through a watch on the target, for the read-replica tier and the web tier.

    .venv/bin/python -m bench.reaction [--steps 20] [--interval 1] [--hold 80] [--png out/reaction.png]

A gauge exporter pod serves a value the script sets (kubectl exec); one ScalingPolicy sizes two Deployments
from it as ceil(value / 10), with no stabilization and no rate limit, so every step is one write: `target`
as its read-replica tier, `web` as its web tier (the floor of the HPA the operator owns, which the operator
raises the Deployment to at once). Each step alternates between two levels. For each: t0 = first instant
Prometheus answers the new value (polled every 50 ms), t1 = the watch event showing the Deployment's new
spec.replicas. The web tier is measured on rises only: scale-down is the HPA's (at its sync, on CPU), so
after each fall the script itself puts `web` back at the lowered floor. Then the value rises once more and
holds for --hold seconds (five HPA syncs at the default 80): the web Deployment must not move below the
floor, and each rise must be one write. Prints p50/p95/max of t1 - t0 and of t1 - (value written) per tier,
and the machine. Needs `make cluster-up`; runs the operator as a local process. bench.reaction_peer reuses
the pieces below to measure KEDA beside it.
"""

from __future__ import annotations

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
from scalekeeper.cli import Parser

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


def scaling_policy(
    query: str, interval: int, target: str | None = "target", web: str | None = None
) -> dict[str, Any]:
    """A policy sizing, as ceil(value / 10), the Deployment `target` as its read-replica tier and the
    Deployment `web` as its web tier (each when given)."""
    behavior = {"scaleUp": FAST, "scaleDown": FAST, "tolerance": 0.0}
    spec: dict[str, Any] = {"intervalSeconds": interval}
    if target is not None:
        spec["readReplicas"] = {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metric": {"query": query, "perReplica": 10},
            "behavior": behavior,
        }
    if web is not None:
        spec["web"] = {
            "deployment": web,
            "minReplicas": 1,
            "maxReplicas": 10,
            "requestRate": {"query": query, "perReplica": 10},
            "behavior": behavior,
        }
    return {
        "apiVersion": "scalekeeper.dev/v1alpha1",
        "kind": "ScalingPolicy",
        "metadata": {"name": "bench"},
        "spec": spec,
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


class Replicas:
    """Watches the namespace's Deployments: when each first showed each spec.replicas since forget(), and
    every change of each one's spec.replicas, in order (`between`)."""

    def __init__(self, apps: client.AppsV1Api, ns: str) -> None:
        self.apps, self.ns = apps, ns
        self.seen: dict[tuple[str, int], float] = {}
        self.current: dict[str, int] = {}
        self.changes: dict[str, list[tuple[float, int]]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                w = watch.Watch()
                for event in w.stream(self.apps.list_namespaced_deployment, self.ns, timeout_seconds=600):
                    obj, now = event["object"], time.time()
                    name, replicas = obj.metadata.name, int(obj.spec.replicas)
                    with self.lock:
                        self.seen.setdefault((name, replicas), now)
                        if self.current.get(name) != replicas:
                            self.changes.setdefault(name, []).append((now, replicas))
                        self.current[name] = replicas
                    if self.stop.is_set():
                        w.stop()
            except Exception:  # a dropped watch is re-opened; its list re-reads every target
                time.sleep(0.5)

    def forget(self, name: str, replicas: int) -> None:
        with self.lock:
            self.seen.pop((name, replicas), None)

    def wait(self, name: str, replicas: int, deadline: float) -> float | None:
        while time.time() < deadline:
            with self.lock:
                if (name, replicas) in self.seen:
                    return self.seen[(name, replicas)]
            time.sleep(0.02)
        return None

    def between(self, name: str, start: float, end: float) -> list[int]:
        """The sizes `name` was changed to from `start` to `end`."""
        with self.lock:
            return [r for t, r in self.changes.get(name, []) if start <= t < end]


def reset_web(
    apps: client.AppsV1Api, hpas: client.AutoscalingV2Api, ns: str, deployment: str, floor: int
) -> None:
    """After a fall: once the operator has lowered the floor of the HPA of the policy `bench`, put the web
    Deployment there (the HPA's job at its next sync on CPU, which these idle pods do not report)."""
    deadline = time.time() + 60
    while hpas.read_namespaced_horizontal_pod_autoscaler("bench-web", ns).spec.min_replicas != floor:
        if time.time() > deadline:
            raise RuntimeError(f"the web floor did not fall to {floor} within 60 s")
        time.sleep(0.05)
    apps.patch_namespaced_deployment_scale(deployment, ns, {"spec": {"replicas": floor}})


def main() -> int:
    parser = Parser(prog="python -m bench.reaction", description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--interval", type=int, default=1, help="the policy's intervalSeconds")
    parser.add_argument("--hold", type=int, default=80, help="seconds the last rise is held (web)")
    parser.add_argument("--png", default=str(ROOT / "out" / "reaction.png"))
    args = parser.parse_args()

    env = cluster_env()
    kubeconfig, prom = env["KUBECONFIG"], env["PROMETHEUS_URL"]
    image = f"{env['SCALEKEEPER_REGISTRY']}/scalekeeper:dev"
    api = config.new_client_from_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    hpas = client.AutoscalingV2Api(api)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    operator = None
    try:
        query = start_exporter(apps, kubeconfig, prom, ns, image)
        create_deployment(apps, ns, "target", image, SLEEPER)
        create_deployment(apps, ns, "web", image, SLEEPER)
        operator = start_operator(kubeconfig, prom, ns, "bench-reaction-operator.log")
        sizes = Replicas(apps, ns)
        started = time.time()
        set_value(kubeconfig, ns, 30)
        apply_object(kubeconfig, ns, scaling_policy(query, args.interval, web="web"))
        settled = time.time() + 60
        if sizes.wait("target", 3, settled) is None or sizes.wait("web", 3, settled) is None:
            print("the tiers did not settle at 3 within 60 s", file=sys.stderr)
            return 1
        rows: dict[str, list[tuple[float, float]]] = {"readReplicas": [], "web": []}
        writes_per_rise: list[int] = []
        rising = started
        levels = [(30, 3), (70, 7)]
        for step in range(args.steps):
            value, replicas = levels[(step + 1) % 2]
            moved = [("readReplicas", "target")] + ([("web", "web")] if value == 70 else [])
            for _, name in moved:
                sizes.forget(name, replicas)
            written = time.time()
            set_value(kubeconfig, ns, value)
            queryable = wait_queryable(prom, query, value)
            for tier, name in moved:
                seen = sizes.wait(name, replicas, time.time() + 60)
                if seen is None:
                    print(f"step {step}: {tier} did not reach {replicas} within 60 s", file=sys.stderr)
                    return 1
                rows[tier].append((seen - queryable, seen - written))
            if value == 30:
                writes_per_rise.append(len(sizes.between("web", rising, time.time())))
                reset_web(apps, hpas, ns, "web", 3)
            else:
                rising = written
            time.sleep(0.5)
        held = hold_risen(kubeconfig, ns, sizes, args.hold)
        sizes.stop.set()
        print(f"machine: {describe_machine(api)}")
        print(f"policy intervalSeconds={args.interval}, Prometheus scrape interval 1 s, {args.steps} steps")
        print(f"{'tier':13} {'measure':44} {'n':>3} {'p50':>7} {'p95':>7} {'max':>7}")
        for tier, tier_rows in rows.items():
            for label, values in (
                ("queryable -> scale visible (operator)", [r[0] for r in tier_rows]),
                ("value written -> scale visible (end to end)", [r[1] for r in tier_rows]),
            ):
                print(
                    f"{tier:13} {label:44} {len(values):3} {pct(values, 0.5):6.2f}s "
                    f"{pct(values, 0.95):6.2f}s {max(values):6.2f}s"
                )
            print(f"{tier:13} mean operator reaction {statistics.mean(r[0] for r in tier_rows):.2f}s")
        print(f"web: Deployment writes per floor rise: {writes_per_rise} (each must be 1)")
        print(
            f"web: held {args.hold} s at the floor of 7: sizes seen {held} "
            f"({'never below the floor' if min(held) >= 7 else 'RESCALED BELOW THE FLOOR'})"
        )
        plot(rows, args.interval, Path(args.png))
        return 0 if set(writes_per_rise) == {1} and min(held) >= 7 else 1
    finally:
        stop_operator(kubeconfig, ns, operator)
        core.delete_namespace(ns)


def hold_risen(kubeconfig: str, ns: str, sizes: Replicas, hold: int) -> list[int]:
    """Raise to 70 once more (the steps end at 30) and hold: every web size seen from the rise to the end of
    the hold; [7] when the operator's one write stood through the HPA's syncs."""
    sizes.forget("web", 7)
    rise = time.time()
    set_value(kubeconfig, ns, 70)
    if sizes.wait("web", 7, time.time() + 60) is None:
        raise RuntimeError("web did not reach 7 within 60 s")
    time.sleep(hold)  # the HPA's syncs are what is watched here: nothing to wait on but time
    return sizes.between("web", rise, time.time())


def plot(rows: dict[str, list[tuple[float, float]]], interval: int, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for (tier, tier_rows), marker in zip(rows.items(), ("o", "s"), strict=True):
        ax.plot(
            range(1, len(tier_rows) + 1),
            [r[0] for r in tier_rows],
            f"{marker}-",
            label=f"{tier}: queryable -> scale visible",
        )
        ax.plot(
            range(1, len(tier_rows) + 1),
            [r[1] for r in tier_rows],
            f"{marker}--",
            label=f"{tier}: value written -> scale visible",
        )
    ax.set_xlabel("rise or fall (web: rises only)")
    ax.set_ylabel("seconds")
    ax.set_title(f"scalekeeper reaction time (intervalSeconds={interval}, scrape 1 s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100, bbox_inches="tight")
    print(f"plot: {png}")


if __name__ == "__main__":
    sys.exit(main())
