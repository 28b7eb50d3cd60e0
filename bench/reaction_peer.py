"""Reaction time beside a peer: scalekeeper and KEDA sizing two Deployments from one metric, same steps.

    PYTHONPATH=operator .venv/bin/python bench/reaction_peer.py [--steps 20] [--png out/reaction-peer.png]

Needs `make cluster-up`, `make image` and KEDA installed (`hack/keda.sh build install`). In one namespace
bench-keda-<random>: bench/reaction.py's gauge exporter and two Deployments. `target` is sized by a
ScalingPolicy exactly as in bench/reaction.py (intervalSeconds 1, no stabilization, no rate limit; the
operator runs as a local process). `target-keda` is sized by a KEDA ScaledObject with a prometheus trigger
on the same query, threshold 10 with AverageValue (replicas = ceil(value / 10)), min 1, max 10. Two KEDA
settings, one after the other; scalekeeper is measured on every step of both:

  1. KEDA defaults: pollingInterval 30, cooldownPeriod 300, the HPA's default behavior. Its scale-down
     waits out the default 300 s stabilization window, so steps alternating 30/70 would cost over 5 min
     each: this setting is measured on scale-up steps only, a ladder 30 -> 40 -> ... -> 100 (one replica a
     step), then on one scale-down step 100 -> 30, reported on its own.
  2. KEDA at its fastest: pollingInterval 1 and horizontalPodAutoscalerConfig.behavior with
     stabilizationWindowSeconds 0 and a 100 %/1 s policy both ways, plus a 100 pods/1 s policy (selectPolicy
     Max): 100 % alone caps 3 -> 7 at 6 per HPA sync. --steps steps alternating 30/70 as bench/reaction.py.

For each step and target: t0 = the first instant Prometheus answers the new value (polled every 50 ms),
t1 = the watch event showing the target's new spec.replicas. A ScaledObject scales 1..N through an HPA,
which reads the metric only on the HPA controller's sync loop (kube-controller-manager
--horizontal-pod-autoscaler-sync-period, 15 s by default; read from its static pod). The gap between steps
is random, 0.5 s to 0.5 s + that period, so steps fall at random phases of the loop (a fixed gap would lock
on to it). Prints p50/p95/max per target and setting, the ratio of the p95s, the machine and the sync
period; writes out/reaction-peer.png. The whole run stays under 20 minutes (--budget).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reaction import (  # a sibling script (bench/ is not a package)
    ROOT,
    SLEEPER,
    STATE,
    create_deployment,
    env_file,
    kubectl,
    pct,
    scaling_policy,
    set_value,
    start_exporter,
    start_operator,
    stop_operator,
    wait_queryable,
)

SK, KEDA = "target", "target-keda"
LABEL = {SK: "scalekeeper", KEDA: "KEDA"}
PROMETHEUS_IN_CLUSTER = "http://prometheus.scalekeeper-system.svc:9090"
APISERVICE = "v1beta1.external.metrics.k8s.io"
FASTEST = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 1},
        {"type": "Pods", "value": 100, "periodSeconds": 1},
    ],
}
LADDER = [40, 50, 60, 70, 80, 90, 100]


def replicas_for(value: int) -> int:
    return min(10, max(1, math.ceil(value / 10)))


def go_duration(text: str) -> float:
    """Seconds in a Go duration such as 15s, 1m0s, 500ms."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text)
    if not parts:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(n) * units[u] for n, u in parts)


def hpa_sync_period(kubeconfig: str) -> tuple[float, str]:
    """The HPA controller's sync period from kube-controller-manager's static pod, and where it came from."""
    pods = json.loads(
        kubectl(
            kubeconfig,
            "-n",
            "kube-system",
            "get",
            "pod",
            "-l",
            "component=kube-controller-manager",
            "-o",
            "json",
        )
    )
    for pod in pods["items"]:
        for container in pod["spec"]["containers"]:
            for arg in container.get("command", []) + container.get("args", []):
                if arg.startswith("--horizontal-pod-autoscaler-sync-period="):
                    return go_duration(arg.split("=", 1)[1]), f"kube-controller-manager {arg}"
    return 15.0, "kube-controller-manager default (no --horizontal-pod-autoscaler-sync-period flag)"


def scaled_object(query: str, fastest: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": KEDA},
        "minReplicaCount": 1,
        "maxReplicaCount": 10,
        "triggers": [
            {
                "type": "prometheus",
                "metricType": "AverageValue",
                "metadata": {"serverAddress": PROMETHEUS_IN_CLUSTER, "query": query, "threshold": "10"},
            }
        ],
    }
    if fastest:
        spec["pollingInterval"] = 1
        spec["advanced"] = {
            "horizontalPodAutoscalerConfig": {"behavior": {"scaleUp": FASTEST, "scaleDown": FASTEST}}
        }
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": KEDA},
        "spec": spec,
    }


class Replicas:
    """Watches the namespace's Deployments: when each first showed each spec.replicas since forget()."""

    def __init__(self, apps: client.AppsV1Api, ns: str) -> None:
        self.apps, self.ns = apps, ns
        self.seen: dict[tuple[str, int], float] = {}
        self.current: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                w = watch.Watch()
                for event in w.stream(self.apps.list_namespaced_deployment, self.ns, timeout_seconds=600):
                    obj, now = event["object"], time.time()
                    with self.lock:
                        self.seen.setdefault((obj.metadata.name, int(obj.spec.replicas)), now)
                        self.current[obj.metadata.name] = int(obj.spec.replicas)
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


@dataclass
class Step:
    phase: str
    value: int
    replicas: int
    scrape: float  # value written -> queryable
    react: dict[str, float | None] = field(default_factory=dict)  # None: no scale within the timeout


@dataclass
class Bench:
    kubeconfig: str
    prom: str
    ns: str
    query: str
    watcher: Replicas
    rng: random.Random
    sync: float
    deadline: float
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def run(self, phase: str, values: list[int], timeout: float) -> None:
        for value in values:
            if time.time() + timeout > self.deadline:
                self.notes.append(f"{phase}: stopped before a {value} step, time budget spent")
                return
            replicas = replicas_for(value)
            moving = [t for t in (SK, KEDA) if self.watcher.current.get(t) != replicas]
            for t in moving:
                self.watcher.forget(t, replicas)
            written = time.time()
            set_value(self.kubeconfig, self.ns, value)
            queryable = wait_queryable(self.prom, self.query, value)
            step = Step(phase, value, replicas, queryable - written)
            for t in moving:
                seen = self.watcher.wait(t, replicas, queryable + timeout)
                step.react[t] = None if seen is None else seen - queryable
            self.steps.append(step)
            shown = ", ".join(
                f"{LABEL[t]} {'timeout' if r is None else f'{r:.2f} s'}" for t, r in step.react.items()
            )
            print(
                f"  {phase} step {len(self.steps)}: value {value} -> {replicas} replicas: {shown}", flush=True
            )
            time.sleep(self.rng.uniform(0.5, 0.5 + self.sync))

    def settle(self, value: int, timeout: float) -> None:
        set_value(self.kubeconfig, self.ns, value)
        replicas, end = replicas_for(value), time.time() + timeout
        for t in (SK, KEDA):
            if self.watcher.wait(t, replicas, end) is None:
                raise RuntimeError(f"{t} did not reach {replicas} replicas within {timeout:.0f} s")


def wait_for(what: str, check: Any, timeout: float) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what}: not within {timeout:.0f} s")


def keda_ready(kubeconfig: str) -> str:
    """KEDA's operator image, once its APIService answers; an error naming the fix otherwise."""
    try:
        status = kubectl(
            kubeconfig,
            "get",
            "apiservice",
            APISERVICE,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Available')].status}",
        )
        image = kubectl(
            kubeconfig,
            "-n",
            "keda",
            "get",
            "deploy",
            "keda-operator",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        )
    except RuntimeError as err:
        raise SystemExit(
            f"KEDA is not installed ({err.args[0].strip()}): run hack/keda.sh build install"
        ) from err
    if status != "True":
        raise SystemExit(f"APIService {APISERVICE} is not Available: check hack/keda.sh install")
    return image


def hpa_behavior(kubeconfig: str, ns: str) -> dict[str, Any]:
    out = kubectl(kubeconfig, "-n", ns, "get", "hpa", f"keda-hpa-{KEDA}", "-o", "json")
    return dict(json.loads(out)["spec"].get("behavior") or {})


def apply(kubeconfig: str, ns: str, obj: dict[str, Any]) -> None:
    kubectl(kubeconfig, "-n", ns, "apply", "-f", "-", stdin=json.dumps(obj))


def summary(values: list[float | None], timeout: float) -> tuple[list[float], int]:
    """The measured values, a timeout counted as the timeout itself (so percentiles are lower bounds)."""
    return [timeout if v is None else v for v in values], sum(v is None for v in values)


SETTINGS = {
    "defaults-up": (
        "defaults, up",
        "KEDA defaults (pollingInterval 30, cooldownPeriod 300, default HPA behavior), scale-up steps only: "
        "ladder 30->40->...->100, one replica a step",
    ),
    "defaults-down": (
        "defaults, down",
        "KEDA defaults, one scale-down step 100->30 (the default 300 s scale-down stabilization window)",
    ),
    "fastest": (
        "fastest",
        "KEDA fastest (pollingInterval 1; HPA behavior stabilization 0, 100%/1s + 100 pods/1s both ways), "
        "steps alternating 30/70",
    ),
}


def report(
    bench: Bench, machine: str, sync: tuple[float, str], keda_image: str, timeouts: dict[str, float]
) -> None:
    print()
    print(f"machine: {machine}")
    print(f"HPA controller sync period: {sync[0]:g} s ({sync[1]}); Prometheus scrape interval 1 s")
    print(f"KEDA image {keda_image}; scalekeeper: local operator, ScalingPolicy intervalSeconds 1")
    print("reaction = value queryable in Prometheus -> watch event showing the target's new spec.replicas")
    columns = ("n", 3), ("p50", 8), ("p95", 8), ("max", 8), ("p95 ratio", 10)
    print(f"{'setting':15} {'steps':>5}  {'target':12}" + "".join(f" {c:>{w}}" for c, w in columns))
    for phase, (name, _) in SETTINGS.items():
        steps = [s for s in bench.steps if s.phase == phase]
        if not steps:
            print(f"{name:15} {0:5d}  (not run)")
            continue
        p95: dict[str, float] = {}
        for i, t in enumerate((SK, KEDA)):
            values, missed = summary([s.react[t] for s in steps if t in s.react], timeouts[phase])
            if not values:
                continue
            p95[t] = pct(values, 0.95)
            ratio = f"{p95[KEDA] / p95[SK]:9.1f}x" if t == KEDA and p95.get(SK) else ""
            late = f"  ({missed} timed out at {timeouts[phase]:.0f} s, counted as that)" if missed else ""
            head = f"{name:15} {len(steps):5d}" if i == 0 else " " * 21
            line = (
                f"{head}  {LABEL[t]:12} {len(values):3d} {pct(values, 0.5):7.2f}s {p95[t]:7.2f}s "
                f"{max(values):7.2f}s {ratio:>10}{late}"
            )
            print(line.rstrip())
    scrape = [s.scrape for s in bench.steps]
    if scrape:
        p50, p95s = pct(scrape, 0.5), pct(scrape, 0.95)
        print(f"value written -> queryable (scrape), all steps: p50 {p50:.2f}s p95 {p95s:.2f}s")
    print("p95 ratio = KEDA p95 / scalekeeper p95 over the same steps")
    for name, text in SETTINGS.values():
        print(f"  {name}: {text}")
    for note in bench.notes:
        print(f"note: {note}")


def plot(bench: Bench, sync: float, png: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    panels = (
        (axes[0], ("fastest",), "KEDA fastest vs scalekeeper, alternating 30/70", False),
        (axes[1], ("defaults-up", "defaults-down"), "KEDA defaults vs scalekeeper (last: scale-down)", True),
    )
    for ax, phases, title, log in panels:
        steps = [s for s in bench.steps if s.phase in phases]
        for t, style in ((SK, "o-"), (KEDA, "s--")):
            xs = [i + 1 for i, s in enumerate(steps) if s.react.get(t) is not None]
            # a reaction can be a few ms below 0 (Prometheus polled every 50 ms): floor it for the log scale
            ys = [max(0.01, s.react[t] or 0.0) for s in steps if s.react.get(t) is not None]
            ax.plot(xs, ys, style, label=LABEL[t])
        ax.axhline(sync, color="grey", linestyle=":", label=f"HPA sync period {sync:g} s")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("queryable -> scale visible (s)")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100, bbox_inches="tight")
    print(f"plot: {png}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--steps", type=int, default=20, help="steps alternating 30/70 for KEDA at its fastest"
    )
    parser.add_argument(
        "--budget", type=float, default=18 * 60, help="seconds for the steps (whole run < 20 min)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random gaps between steps")
    parser.add_argument(
        "--settings", default="defaults,fastest", help="KEDA settings to run, in order: defaults,fastest"
    )
    parser.add_argument("--png", default=str(ROOT / "out" / "reaction-peer.png"))
    args = parser.parse_args()
    started = time.time()

    env = env_file(STATE / "cluster.env")
    kubeconfig, prom = env["KUBECONFIG"], env["PROMETHEUS_URL"]
    image = f"{env['SCALEKEEPER_REGISTRY']}/scalekeeper:dev"
    keda_image = keda_ready(kubeconfig)
    sync = hpa_sync_period(kubeconfig)
    machine = f"{platform.node()} {os.cpu_count()} cores, {platform.platform()}"
    timeouts = {"defaults-up": 120.0, "defaults-down": 420.0, "fastest": 60.0}
    api = config.new_client_from_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = f"bench-keda-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    print(f"namespace {ns}; {machine}; HPA sync period {sync[0]:g} s", flush=True)
    operator = None
    try:
        query = start_exporter(apps, kubeconfig, prom, ns, image)
        create_deployment(apps, ns, SK, image, SLEEPER)
        create_deployment(apps, ns, KEDA, image, SLEEPER)
        watcher = Replicas(apps, ns)
        operator = start_operator(kubeconfig, prom, ns, "bench-reaction-peer-operator.log")
        apply(kubeconfig, ns, scaling_policy(query, 1, SK))
        settings = args.settings.split(",")
        apply(kubeconfig, ns, scaled_object(query, fastest=settings[0] == "fastest"))
        bench = Bench(
            kubeconfig, prom, ns, query, watcher, random.Random(args.seed), sync[0], started + args.budget
        )
        bench.settle(30, 120)
        if "defaults" in settings:
            print("KEDA defaults: scale-up ladder, then one scale-down step", flush=True)
            bench.run("defaults-up", LADDER, timeouts["defaults-up"])
            bench.run("defaults-down", [30], timeouts["defaults-down"])
        if "fastest" not in settings:
            watcher.stop.set()
            report(bench, machine, sync, keda_image, timeouts)
            plot(bench, sync[0], args.png)
            print(f"wall time {time.time() - started:.0f} s")
            return 0
        apply(kubeconfig, ns, scaled_object(query, fastest=True))
        wait_for(
            "KEDA's HPA taking the fastest behavior",
            lambda: hpa_behavior(kubeconfig, ns).get("scaleDown", {}).get("stabilizationWindowSeconds") == 0,
            60,
        )
        # Start the alternation from 30 whatever the default scale-down left.
        bench.settle(30, timeouts["defaults-down"])
        print(f"KEDA fastest: {args.steps} steps alternating 30/70", flush=True)
        bench.run("fastest", [70 if i % 2 == 0 else 30 for i in range(args.steps)], timeouts["fastest"])
        watcher.stop.set()
        report(bench, machine, sync, keda_image, timeouts)
        plot(bench, sync[0], args.png)
        print(f"wall time {time.time() - started:.0f} s")
        return 0
    finally:
        # The ScaledObject and the policy go first, while KEDA and the operator can drop their finalizers.
        wait_gone = True
        try:
            kubectl(
                kubeconfig, "-n", ns, "delete", "scaledobject", KEDA, "--ignore-not-found", "--timeout=60s"
            )
        except RuntimeError as err:
            wait_gone = False
            print(f"deleting the ScaledObject: {err}", file=sys.stderr)
        stop_operator(kubeconfig, ns, operator)
        core.delete_namespace(ns)
        end = time.time() + 120
        while wait_gone and time.time() < end:
            try:
                core.read_namespace(ns)
            except ApiException as err:
                if err.status == 404:
                    break
            time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())
