"""Cost at scale: one operator process sizing N ScalingPolicies on the kind cluster, nothing changing.

    PYTHONPATH=operator .venv/bin/python -m bench.scale [--sizes 100,300] [--namespaces 5] [--interval 15]

For each size: N policies spread over `--namespaces` namespaces `bench-scale-<run>-<k>`, each with a web
tier (its own Deployment, sized through the operator's HPA), three worker queues (existing Deployments,
minReplicas 0) and read replicas (a Deployment, minReplicas 0). Every Deployment stays at 0 replicas and
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

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from bench import profile_summary
from bench.common import (
    LOGS,
    ROOT,
    cluster_env,
    cpu_seconds,
    delete_lease,
    describe_machine,
    free_port,
    operator_env,
    percentile,
    proc_status,
    prometheus_scalar,
    run_kubectl,
    sigterm_as_interrupt,
    start_operator_process,
    status_mib,
    stop_process,
    wait_for,
)

OUT = ROOT / "out"
# What a wait's check may raise and still be asked again: the API server or Prometheus busy or unreachable.
API_ERRORS = (ApiException, OSError)

GROUP, VERSION, PLURAL = "scalekeeper.dev", "v1alpha1", "scalingpolicies"
NAMESPACE_PREFIX = "bench-scale-"
LEASE_NAME, LEASE_NAMESPACE = "bench-scale-leader", "default"
QUEUES = 3
# One series per policy and metric: web's request rate, the read load, waiting and in-flight per queue.
METRICS = ("web", "read", *(f"{m}-q{q}" for q in range(QUEUES) for m in ("waiting", "inflight")))
TARGETS_PER_POLICY = 2 + QUEUES  # web, read replicas, one per queue
# Cycles run through asyncio.to_thread, i.e. the loop's default executor (SCALEKEEPER_MAX_WORKERS only sizes
# the HTTP connection pool): this many at once on this machine.
POOL = min(32, (os.cpu_count() or 1) + 4)

# The exporter builds its whole answer once (every value is 0) and serves it gzipped: at 3,000 policies it
# is 24,000 series scraped every second.
EXPORTER = (
    "import gzip,http.server,os\n"
    "run,n=os.environ['RUN'],int(os.environ['POLICIES'])\n"
    "names=os.environ['METRICS'].split(',')\n"
    'rows=[\'# TYPE bench_load gauge\']+[\'bench_load{run="%s",policy="sp-%05d",metric="%s"} 0\''
    " % (run,i,m) for i in range(n) for m in names]\n"
    "plain=('\\n'.join(rows)+'\\n').encode(); packed=gzip.compress(plain)\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "  def do_GET(self):\n"
    "    z='gzip' in self.headers.get('Accept-Encoding','')\n"
    "    b=packed if z else plain\n"
    # Prometheus 3 refuses a scrape without a Content-Type it knows.
    "    self.send_response(200); self.send_header('Content-Type','text/plain; version=0.0.4')\n"
    "    self.send_header('Content-Length',str(len(b)))\n"
    "    z and self.send_header('Content-Encoding','gzip')\n"
    "    self.end_headers(); self.wfile.write(b)\n"
    "  def log_message(self,*a): pass\n"
    "http.server.ThreadingHTTPServer(('',9100),H).serve_forever()\n"
)


# --------------------------------------------------------------------------- settings and machine


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]
    namespaces: int
    interval: int
    window_cycles: int
    qps: float
    concurrency: int
    profile_seconds: int
    kubeconfig: str
    prometheus: str
    image: str
    operator_env: dict[str, str]
    command: str
    report_from: str | None = None


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--sizes", default="100,300", help="policy counts, comma-separated (issue: 100,1000,3000)"
    )
    parser.add_argument("--namespaces", type=int, default=5, help="namespaces the policies are spread over")
    parser.add_argument("--interval", type=int, default=15, help="the policies' intervalSeconds")
    parser.add_argument("--window-cycles", type=int, default=4, help="steady window, in intervals (>= 2)")
    parser.add_argument("--qps", type=float, default=50.0, help="object creations per second, at most")
    parser.add_argument("--concurrency", type=int, default=8, help="object creations in flight")
    parser.add_argument(
        "--profile-seconds", type=int, default=60, help="py-spy window at the largest size (0: none)"
    )
    parser.add_argument(
        "--report-from",
        metavar="JSON",
        help="print the report of a saved run (out/bench-scale.json) and exit",
    )
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the operator (e.g. SCALEKEEPER_MAX_WORKERS=16); repeatable",
    )
    args = parser.parse_args(argv)
    sizes = tuple(sorted({int(s) for s in args.sizes.split(",") if s.strip()}))
    if not sizes or min(sizes) < 1 or args.window_cycles < 2 or args.namespaces < 1:
        parser.error("--sizes must be positive, --window-cycles >= 2, --namespaces >= 1")
    cluster = cluster_env()
    return Settings(
        sizes=sizes,
        namespaces=args.namespaces,
        interval=args.interval,
        window_cycles=args.window_cycles,
        qps=args.qps,
        concurrency=args.concurrency,
        profile_seconds=args.profile_seconds,
        kubeconfig=os.environ.get("KUBECONFIG") or cluster["KUBECONFIG"],
        prometheus=cluster.get("PROMETHEUS_URL", "http://127.0.0.1:30090"),
        image=f"{cluster.get('SCALEKEEPER_REGISTRY', 'localhost:5001')}/scalekeeper:dev",
        operator_env=dict(kv.split("=", 1) for kv in args.operator_env),
        command=shlex.join(
            ["PYTHONPATH=operator", sys.executable, "-m", "bench.scale", *(argv or sys.argv[1:])]
        ),
        report_from=args.report_from,
    )


# --------------------------------------------------------------------------- objects


def policy_name(i: int) -> str:
    return f"sp-{i:05d}"


def namespace_names(run: str, count: int) -> list[str]:
    return [f"{NAMESPACE_PREFIX}{run}-{k}" for k in range(count)]


def series(run: str, policy: str, metric: str) -> str:
    return f'bench_load{{run="{run}",policy="{policy}",metric="{metric}"}}'


def deployment_body(name: str, run: str, image: str, replicas: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"bench-scale": run}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": image,
                            "command": ["python3", "-c", "import time; time.sleep(1e9)"],
                        }
                    ],
                    "terminationGracePeriodSeconds": 1,
                },
            },
        },
    }


def workload_names(policy: str) -> list[str]:
    return [f"{policy}-web", f"{policy}-read", *(f"{policy}-worker-{q}" for q in range(QUEUES))]


def policy_body(i: int, run: str, interval: int) -> dict[str, Any]:
    name = policy_name(i)
    workers = [
        {
            "queue": f"q{q}",
            "deployment": f"{name}-worker-{q}",
            "minReplicas": 0,
            "maxReplicas": 5,
            "tasksPerWorker": 10,
            "metrics": {
                "waiting": series(run, name, f"waiting-q{q}"),
                "inFlight": series(run, name, f"inflight-q{q}"),
            },
        }
        for q in range(QUEUES)
    ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScalingPolicy",
        "metadata": {"name": name, "labels": {"bench-scale": run}},
        "spec": {
            "intervalSeconds": interval,
            # requestRate only: the HPA gets no resource metric, and at 0 replicas it scales nothing anyway.
            "web": {
                "deployment": f"{name}-web",
                "minReplicas": 1,
                "maxReplicas": 5,
                "requestRate": {"query": series(run, name, "web"), "perReplica": 10.0},
            },
            "workers": workers,
            "readReplicas": {
                "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{name}-read"},
                "minReplicas": 0,
                "maxReplicas": 5,
                "metric": {"query": series(run, name, "read"), "perReplica": 10.0},
            },
        },
    }


def exporter_body(run: str, policies: int, image: str) -> dict[str, Any]:
    body = deployment_body("bench-exporter", run, image, replicas=1)
    pod = body["spec"]["template"]
    pod["metadata"]["annotations"] = {"prometheus.io/scrape": "true", "prometheus.io/port": "9100"}
    container = pod["spec"]["containers"][0]
    container["command"] = ["python3", "-c", EXPORTER]
    container["env"] = [
        {"name": "RUN", "value": run},
        {"name": "POLICIES", "value": str(policies)},
        {"name": "METRICS", "value": ",".join(METRICS)},
    ]
    return body


# --------------------------------------------------------------------------- polite creation


class RateLimiter:
    """At most `per_second` calls started per second across threads: the API server is shared."""

    def __init__(self, per_second: float) -> None:
        self._gap = 1.0 / per_second
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self._gap
        time.sleep(max(0.0, start - now))


def call_politely(limiter: RateLimiter, create: Callable[[], Any], attempts: int = 5) -> None:
    """One creation; AlreadyExists is success (a retried call), throttling and 5xx are retried."""
    for attempt in range(attempts):
        limiter.wait()
        try:
            create()
            return
        except ApiException as exc:
            if exc.status == 409:
                return
            if exc.status not in (429, 500, 503, 504) or attempt == attempts - 1:
                raise
            time.sleep(2**attempt)


def create_all(settings: Settings, calls: list[Callable[[], Any]]) -> None:
    limiter = RateLimiter(settings.qps)
    with ThreadPoolExecutor(settings.concurrency) as pool:
        for _ in pool.map(lambda call: call_politely(limiter, call), calls):
            pass


# --------------------------------------------------------------------------- the fleet


@dataclass
class Fleet:
    """What one size created: the namespaces (all of them, for cleanup) and where each policy lives."""

    run: str
    size: int
    namespaces: list[str]

    def namespace_of(self, i: int) -> str:
        return self.namespaces[i % len(self.namespaces)]


def create_namespaces(core: client.CoreV1Api, fleet: Fleet) -> None:
    for ns in fleet.namespaces:
        core.create_namespace({"metadata": {"name": ns, "labels": {"bench-scale": fleet.run}}})


def start_exporter(apps: client.AppsV1Api, fleet: Fleet, image: str) -> None:
    apps.create_namespaced_deployment(fleet.namespaces[0], exporter_body(fleet.run, fleet.size, image))
    wait_for(
        "the exporter to run",
        lambda: (
            (
                apps.read_namespaced_deployment_status(
                    "bench-exporter", fleet.namespaces[0]
                ).status.available_replicas
                or 0
            )
            >= 1
        ),
        timeout=180,
        every=1.0,
        retry_on=API_ERRORS,
    )


def wait_for_series(prometheus: str, fleet: Fleet) -> None:
    expected = fleet.size * len(METRICS)
    wait_for(
        f"Prometheus to hold all {expected} bench_load series",
        lambda: prometheus_scalar(prometheus, f'count(bench_load{{run="{fleet.run}"}})') == expected,
        timeout=180,
        every=1.0,
        retry_on=API_ERRORS,
    )


def create_workloads(settings: Settings, apps: client.AppsV1Api, fleet: Fleet) -> None:
    calls: list[Callable[[], Any]] = []
    for i in range(fleet.size):
        ns = fleet.namespace_of(i)
        for name in workload_names(policy_name(i)):
            body = deployment_body(name, fleet.run, settings.image)
            calls.append(functools.partial(apps.create_namespaced_deployment, ns, body))
    create_all(settings, calls)


def create_policies(settings: Settings, objects: client.CustomObjectsApi, fleet: Fleet) -> None:
    calls: list[Callable[[], Any]] = []
    for i in range(fleet.size):
        ns, body = fleet.namespace_of(i), policy_body(i, fleet.run, settings.interval)
        calls.append(
            functools.partial(objects.create_namespaced_custom_object, GROUP, VERSION, ns, PLURAL, body)
        )
    create_all(settings, calls)


# --------------------------------------------------------------------------- the operator process


@dataclass(frozen=True)
class ProcSample:
    at: float
    cpu_seconds: float
    rss_mb: float
    hwm_mb: float
    threads: int


def proc_sample(pid: int) -> ProcSample:
    """utime + stime of the whole process (every thread) and its memory, from /proc."""
    at = time.time()
    cpu = cpu_seconds(pid)
    status = proc_status(pid)
    return ProcSample(
        at, cpu, status_mib(status, "VmRSS"), status_mib(status, "VmHWM"), int(status.get("Threads", "0"))
    )


# A cycle logs one "decision" line per target; web's stands for the policy's cycle.
_DECISION = re.compile(r'"message": "decision", "policy": "(?P<policy>[^"]+)", "target": "web"')
_TIMESTAMP = re.compile(r'"timestamp": "(?P<ts>[^"]+)"')
_SEVERITY = re.compile(r'"severity": "(?P<sev>warning|error|critical)"')
_MESSAGE = re.compile(r'"message": "(?P<msg>(?:[^"\\]|\\.)*)"')


@dataclass
class DecisionLog:
    """Follows the operator's log: when each policy was evaluated, and every warning or error."""

    path: Path
    evaluations: dict[str, list[float]] = field(default_factory=dict)
    problems: Counter[str] = field(default_factory=Counter)
    # When a target held because its metric was absent (a failed scrape makes every series stale).
    missing_metric: list[float] = field(default_factory=list)
    # When the operator stopped acting because it could not renew its lease (the API server unreachable).
    leadership_lost: list[float] = field(default_factory=list)
    lines: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        threading.Thread(target=self._follow, name="decision-log", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _follow(self) -> None:
        with self.path.open(errors="replace") as f:
            pending = ""
            while not self._stop.is_set():
                chunk = f.read(1 << 20)
                if not chunk:
                    time.sleep(0.2)
                    continue
                pending += chunk
                *complete, pending = pending.split("\n")
                for line in complete:
                    self._take(line)

    def _take(self, line: str) -> None:
        self.lines += 1
        if '"message": "leadership changed", "leader": false' in line and (ts := _TIMESTAMP.search(line)):
            self.leadership_lost.append(datetime.fromisoformat(ts["ts"]).timestamp())
        if '"limited_by": "missingMetric"' in line and (ts := _TIMESTAMP.search(line)):
            self.missing_metric.append(datetime.fromisoformat(ts["ts"]).timestamp())
        if (m := _DECISION.search(line)) and (ts := _TIMESTAMP.search(line)):
            at = datetime.fromisoformat(ts["ts"]).timestamp()
            with self._lock:
                self.evaluations.setdefault(m["policy"], []).append(at)
            return
        if not line.startswith("{"):
            if line.strip():
                self.problems[f"(not JSON) {line.strip()[:160]}"] += 1
        elif sev := _SEVERITY.search(line):
            msg = _MESSAGE.search(line)
            self.problems[f"{sev['sev']}: {(msg['msg'] if msg else line)[:160]}"] += 1

    def snapshot(self) -> dict[str, list[float]]:
        with self._lock:
            return {k: list(v) for k, v in self.evaluations.items()}


class OperatorProcess:
    """`scalekeeper run` as a local process serving only bench-scale-* namespaces, with its own lease."""

    def __init__(self, settings: Settings, label: str) -> None:
        LOGS.mkdir(exist_ok=True)
        self.log_path = LOGS / f"bench-scale-operator-{label}.log"
        self.counts_path = LOGS / f"bench-scale-requests-{label}.json"
        self.counts_path.unlink(missing_ok=True)
        self.status_trace = LOGS / f"bench-scale-status-{label}.jsonl"
        self.status_trace.unlink(missing_ok=True)
        self.metrics_port = free_port()
        env = operator_env(
            kubeconfig=settings.kubeconfig,
            prometheus=settings.prometheus,
            namespaces=f"{NAMESPACE_PREFIX}*",
            lease=LEASE_NAME,
            lease_namespace=LEASE_NAMESPACE,
            identity="bench-scale",
            metrics_port=self.metrics_port,
            extra={
                # the operator's package, and the project root for `-m bench.counted_operator`
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(ROOT / "operator"), str(ROOT), os.environ.get("PYTHONPATH")])
                ),
                # every cycle's decision line: the gaps and evaluations are read from them
                "SCALEKEEPER_LOG_DECISIONS": "all",
                "BENCH_STATUS_TRACE": str(self.status_trace),
                **settings.operator_env,
            },
        )
        self.started = time.time()
        # Its own session: a Ctrl-C here must not stop it before it has removed the policies' finalizers.
        self.process = start_operator_process(
            env,
            self.log_path,
            command=(sys.executable, "-m", "bench.counted_operator", str(self.counts_path)),
            new_session=True,
        )
        self.log = DecisionLog(self.log_path)
        self.log.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def request_counts(self) -> Counter[str]:
        try:
            return Counter(json.loads(self.counts_path.read_text()))
        except (OSError, ValueError):
            return Counter()

    def own_metrics(self) -> dict[str, float]:
        """The operator's /metrics, summed by metric name (labels dropped), for the few we need."""
        wanted = (
            "scalekeeper_scale_writes_total",
            "scalekeeper_prometheus_requests_total",
            "scalekeeper_prometheus_missing_total",
            "scalekeeper_reconcile_seconds_sum",
            "scalekeeper_reconcile_seconds_count",
            "scalekeeper_prometheus_query_seconds_sum",
            "scalekeeper_prometheus_query_seconds_count",
            "scalekeeper_policies",
        )
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=30) as resp:
            text = resp.read().decode()
        out: dict[str, float] = dict.fromkeys(wanted, 0.0)
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in out:
                out[name] += float(line.rsplit(" ", 1)[1])
        return out

    def stop(self, timeout: float = 30) -> None:
        self.log.stop()
        stop_process(self.process, timeout)


def apiserver_policy_requests(kubeconfig: str) -> Counter[str]:
    """apiserver_request_total for scalingpolicies by verb/subresource. Cluster-wide (the other tests'
    operators count too): a cross-check of the operator-side count, not the measure."""
    out = run_kubectl(kubeconfig, "get", "--raw", "/metrics", timeout=60)
    counts: Counter[str] = Counter()
    for line in out.stdout.splitlines():
        if line.startswith("apiserver_request_total{") and 'resource="scalingpolicies"' in line:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
            key = f"{labels.get('verb')} {labels.get('subresource') or '-'}"
            counts[key] += int(float(line.rsplit(" ", 1)[1]))
    return counts


# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Snapshot:
    proc: ProcSample
    requests: Counter[str]
    own: dict[str, float]
    apiserver: Counter[str]


def take_snapshot(op: OperatorProcess, kubeconfig: str) -> Snapshot:
    proc = proc_sample(op.pid)
    return Snapshot(proc, op.request_counts(), op.own_metrics(), apiserver_policy_requests(kubeconfig))


@dataclass
class SizeResult:
    policies: int
    interval: int
    namespaces: int
    setup_seconds: float
    first_decision_s: float
    all_once_s: float
    startup_cpu_s: float
    window_s: float
    policy_cycles: int
    cpu_per_policy_cycle_ms: float
    cores_busy: float
    rss_start_mb: float
    rss_end_mb: float
    rss_peak_mb: float
    threads: int
    writes_per_min: float
    lease_writes_per_min: float
    scale_writes: float
    status_patches_per_min: float
    apiserver_policy_writes_per_min: float
    prometheus_per_cycle: float
    reads_per_cycle: float
    reads_by_kind: dict[str, float]
    writes_by_kind: dict[str, float]
    reconcile_mean_ms: float
    missed: int
    policies_missing: int
    period_p50_s: float
    period_p95_s: float
    period_max_s: float
    log_lines_per_s: float
    load_average: float
    cycles_per_s: float
    cycles_in_flight: float
    missing_metric_decisions: int
    failed_scrapes: int
    leadership_lost: int
    settle_s: float
    problems: dict[str, int]
    events: dict[str, int]
    status_causes: dict[str, int]
    profile: list[str] = field(default_factory=list)


_READ_VERBS = ("GET", "LIST")
_WATCH = "WATCH"


def split_requests(delta: Counter[str]) -> tuple[Counter[str], Counter[str]]:
    """Reads and writes by `<client> <VERB> <resource>`; watches are neither (they are long-lived)."""
    reads, writes = Counter[str](), Counter[str]()
    for key, n in delta.items():
        if not key.startswith(("client ", "kopf ")):
            continue
        verb = key.split(" ")[1]
        if verb in _READ_VERBS:
            reads[key] += n
        elif verb != _WATCH:
            writes[key] += n
    return reads, writes


def evaluations_in(evals: dict[str, list[float]], start: float, end: float) -> int:
    return sum(1 for times in evals.values() for t in times if start < t <= end)


def cycle_gaps(evals: dict[str, list[float]], start: float, end: float) -> list[float]:
    """Every gap between two evaluations of a policy that ends inside the window, and each policy's open
    gap at the end of the window (a policy that stopped being evaluated shows there)."""
    gaps: list[float] = []
    for times in evals.values():
        ordered = sorted(times)
        gaps += [b - a for a, b in itertools.pairwise(ordered) if start < b <= end]
        last = max((t for t in ordered if t <= end), default=None)
        if last is not None:
            gaps.append(end - last)
    return gaps


def wait_all_evaluated(op: OperatorProcess, size: int, timeout: float) -> tuple[float, float]:
    """Seconds from the operator's start to its first decision and to every policy's first one."""
    deadline = time.monotonic() + timeout
    while len(op.log.evaluations) < size:
        if not op.alive():
            raise RuntimeError(f"the operator exited ({op.process.returncode}); see {op.log_path}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(op.log.evaluations)}/{size} policies evaluated after {timeout:.0f} s")
        time.sleep(0.5)
    firsts = [min(times) for times in op.log.snapshot().values()]
    return min(firsts) - op.started, max(firsts) - op.started


def failed_scrapes(prometheus: str, fleet: Fleet, seconds: float) -> int:
    """Scrapes of the exporter that failed over the last `seconds`: each one leaves every bench series
    absent until the next, and the policies that query then hold (and say so)."""
    span = f"{max(int(seconds), 1)}s"
    up = f'up{{namespace="{fleet.namespaces[0]}"}}'
    with contextlib.suppress(OSError, ValueError, KeyError):
        return int(
            prometheus_scalar(prometheus, f"count_over_time({up}[{span}]) - sum_over_time({up}[{span}])") or 0
        )
    return -1


def wait_settled(op: OperatorProcess, evaluations: int, timeout: float) -> float:
    """Wait until every policy was evaluated `evaluations` times: its first cycles create the HPA, post
    Events and write status twice (before and after the HPA exists), which is start-up, not idle cost.
    Returns the seconds waited (the timeout when some policies are too slow to get there)."""
    started = time.monotonic()
    with contextlib.suppress(TimeoutError):
        wait_for(
            f"every policy evaluated {evaluations} times",
            lambda: min(len(t) for t in op.log.snapshot().values()) >= evaluations,
            timeout,
            every=1.0,
            retry_on=API_ERRORS,
        )
    return time.monotonic() - started


def per_minute(n: float, seconds: float) -> float:
    return n * 60 / seconds if seconds else float("nan")


def summarise_window(
    settings: Settings, op: OperatorProcess, a: Snapshot, b: Snapshot, lines: tuple[int, int]
) -> dict[str, Any]:
    seconds = b.proc.at - a.proc.at
    evals = op.log.snapshot()
    cycles = evaluations_in(evals, a.proc.at, b.proc.at)
    reads, writes = split_requests(b.requests - a.requests)
    # Each ratio takes its numerator and denominator from the same snapshot (log, counts file, /metrics).
    counted_cycles = max(b.requests["cycles"] - a.requests["cycles"], 1)
    lease = sum(n for k, n in writes.items() if " leases" in k)
    own = {k: b.own[k] - a.own.get(k, 0.0) for k in b.own}
    gaps = cycle_gaps(evals, a.proc.at, b.proc.at)
    apiserver = b.apiserver - a.apiserver
    return {
        "window_s": seconds,
        "policy_cycles": cycles,
        "cpu_per_policy_cycle_ms": 1000 * (b.proc.cpu_seconds - a.proc.cpu_seconds) / max(cycles, 1),
        "cores_busy": (b.proc.cpu_seconds - a.proc.cpu_seconds) / seconds,
        "rss_start_mb": a.proc.rss_mb,
        "rss_end_mb": b.proc.rss_mb,
        "rss_peak_mb": b.proc.hwm_mb,
        "threads": b.proc.threads,
        "writes_per_min": per_minute(sum(writes.values()) - lease, seconds),
        "lease_writes_per_min": per_minute(lease, seconds),
        "scale_writes": own["scalekeeper_scale_writes_total"],
        "status_patches_per_min": per_minute(
            sum(n for k, n in writes.items() if "scalingpolicies/status" in k), seconds
        ),
        "apiserver_policy_writes_per_min": per_minute(
            sum(n for k, n in apiserver.items() if k.split()[0] in ("PATCH", "UPDATE", "APPLY")), seconds
        ),
        "prometheus_per_cycle": own["scalekeeper_prometheus_requests_total"]
        / max(own["scalekeeper_reconcile_seconds_count"], 1),
        "reads_per_cycle": sum(n for k, n in reads.items() if k.startswith("client ")) / counted_cycles,
        "reads_by_kind": {k: round(n / counted_cycles, 3) for k, n in reads.most_common()},
        "writes_by_kind": {k: round(per_minute(n, seconds), 2) for k, n in writes.most_common()},
        "reconcile_mean_ms": 1000
        * own["scalekeeper_reconcile_seconds_sum"]
        / max(own["scalekeeper_reconcile_seconds_count"], 1),
        "missed": sum(1 for g in gaps if g > 2 * settings.interval),
        "policies_missing": len(
            [p for p, times in evals.items() if not any(a.proc.at < t <= b.proc.at for t in times)]
        ),
        "period_p50_s": percentile(gaps, 0.5),
        "period_p95_s": percentile(gaps, 0.95),
        "period_max_s": max(gaps, default=float("nan")),
        "log_lines_per_s": (lines[1] - lines[0]) / seconds,
        # Little's law: cycles running at once on average; against the thread pool's size it tells whether
        # the policies wait for a thread rather than for the CPU or the API server.
        "missing_metric_decisions": sum(1 for t in op.log.missing_metric if a.proc.at < t <= b.proc.at),
        "leadership_lost": sum(1 for t in op.log.leadership_lost if a.proc.at < t <= b.proc.at),
        "cycles_per_s": own["scalekeeper_reconcile_seconds_count"] / seconds,
        "cycles_in_flight": own["scalekeeper_reconcile_seconds_sum"] / seconds,
        # The cluster is shared: how busy the machine was says how much to trust the CPU figures.
        "load_average": os.getloadavg()[0],
    }


def changed_fields(old: Any, new: Any, prefix: str) -> list[str]:
    """Dotted paths where two status bodies differ; conditions and targets are matched by type or name."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            f
            for k in sorted(old.keys() | new.keys())
            for f in changed_fields(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else k)
        ]
    if isinstance(old, list) and isinstance(new, list) and all(isinstance(x, dict) for x in old + new):
        keyed_old = {x.get("type") or x.get("name"): x for x in old}
        keyed_new = {x.get("type") or x.get("name"): x for x in new}
        if None not in keyed_old and None not in keyed_new:
            return [
                f
                for k in sorted(keyed_old.keys() | keyed_new.keys())
                for f in changed_fields(keyed_old.get(k), keyed_new.get(k), f"{prefix}[{k}]")
            ]
    return [] if old == new else [prefix]


def status_write_causes(trace: Path, start: float, end: float) -> dict[str, int]:
    """For each status patch inside the window, what differs from the same policy's previous patch."""
    if not trace.exists():
        return {}
    previous: dict[str, Any] = {}
    causes: Counter[str] = Counter()
    for line in trace.read_text().splitlines():
        entry = json.loads(line)
        path, body = entry["path"], entry["body"]
        if start < entry["at"] <= end:
            if path in previous:
                causes.update(set(changed_fields(previous[path], body, "")) or {"(identical body)"})
            else:
                causes["(first status patch of this process)"] += 1
        previous[path] = body
    return dict(causes.most_common(12))


def record_profile(pid: int, seconds: int, label: str) -> list[str]:
    pyspy = Path(sys.executable).with_name("py-spy")
    if not pyspy.exists():
        return [f"(no profile: {pyspy} missing; pip install -e '.[bench]')"]
    OUT.mkdir(exist_ok=True)
    raw = OUT / f"bench-scale-profile-{label}.txt"
    run = subprocess.run(
        [
            str(pyspy),
            "record",
            "--gil",
            "-p",
            str(pid),
            "-d",
            str(seconds),
            "-r",
            "100",
            "-f",
            "raw",
            "-o",
            str(raw),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if run.returncode or not raw.exists():
        return [f"(py-spy failed: {run.stderr.strip()[-300:]})"]
    summary = profile_summary.render(profile_summary.summarise(raw.read_text()), seconds=seconds)
    return [
        f"py-spy --gil (any thread holding the GIL), {seconds} s at 100 Hz: {raw.relative_to(ROOT)}",
        *summary,
    ]


def events_by_reason(core: client.CoreV1Api, fleet: Fleet) -> dict[str, int]:
    """Events the operator posted on the policies since it started (all of them writes)."""
    reasons: Counter[str] = Counter()
    for ns in fleet.namespaces:
        listed = core.list_namespaced_event(ns, field_selector="involvedObject.kind=ScalingPolicy")
        reasons.update(f"{e.type} {e.reason}" for e in listed.items)
    return dict(reasons.most_common())


# --------------------------------------------------------------------------- cleanup


def delete_policies(objects: client.CustomObjectsApi, fleet: Fleet, op: OperatorProcess | None) -> None:
    """Delete the policies while the operator runs (it removes its finalizer); if it cannot (dead, or too
    slow), remove the finalizer ourselves, only ever on this run's policies."""
    for ns in fleet.namespaces:
        with contextlib.suppress(ApiException):
            objects.delete_collection_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)

    def remaining() -> list[tuple[str, str]]:
        left = []
        for ns in fleet.namespaces:
            with contextlib.suppress(ApiException):
                items = objects.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
                left += [(ns, item["metadata"]["name"]) for item in items]
        return left

    timeout = 60 + fleet.size / 5 if op is not None and op.alive() else 0
    with contextlib.suppress(TimeoutError):
        wait_for("the operator to release the policies", lambda: not remaining(), timeout, 2, API_ERRORS)
    for ns, name in remaining():
        with contextlib.suppress(ApiException):
            objects.patch_namespaced_custom_object(
                GROUP, VERSION, ns, PLURAL, name, {"metadata": {"finalizers": None}}
            )


def delete_namespaces(core: client.CoreV1Api, fleet: Fleet, wait_seconds: float) -> None:
    for ns in fleet.namespaces:
        with contextlib.suppress(ApiException):
            core.delete_namespace(ns)

    def gone() -> bool:
        names = {
            n.metadata.name for n in core.list_namespace(label_selector=f"bench-scale={fleet.run}").items
        }
        return not names

    # Waiting keeps one size's garbage collection out of the next size's measurement.
    with contextlib.suppress(TimeoutError):
        wait_for("the namespaces to be deleted", gone, wait_seconds, 3, API_ERRORS)


# --------------------------------------------------------------------------- one size


@dataclass
class Apis:
    core: client.CoreV1Api
    apps: client.AppsV1Api
    objects: client.CustomObjectsApi


def build_fleet(settings: Settings, apis: Apis, fleet: Fleet) -> None:
    create_namespaces(apis.core, fleet)
    start_exporter(apis.apps, fleet, settings.image)
    wait_for_series(settings.prometheus, fleet)
    create_workloads(settings, apis.apps, fleet)
    create_policies(settings, apis.objects, fleet)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def fleet_of(settings: Settings, apis: Apis, size: int) -> Iterator[tuple[Fleet, list[OperatorProcess]]]:
    """The fleet, and a slot for the operator; on the way out (also on error or Ctrl-C) the policies go
    while the operator still runs, then the operator, then the namespaces."""
    run = uuid.uuid4().hex[:6]
    fleet = Fleet(run, size, namespace_names(run, min(settings.namespaces, size)))
    operators: list[OperatorProcess] = []
    try:
        yield fleet, operators
    finally:
        say(f"cleanup: {size} policies, then the operator, then {len(fleet.namespaces)} namespaces")
        op = operators[0] if operators else None
        delete_policies(apis.objects, fleet, op)
        if op is not None:
            op.stop()
        delete_namespaces(apis.core, fleet, wait_seconds=120 + size / 2)


def measure_size(settings: Settings, apis: Apis, size: int, profile: bool) -> SizeResult:
    with fleet_of(settings, apis, size) as (fleet, operators):
        started = time.monotonic()
        say(
            f"{size} policies: creating {len(fleet.namespaces)} namespaces, exporter, "
            f"{size * TARGETS_PER_POLICY} Deployments"
        )
        build_fleet(settings, apis, fleet)
        setup = time.monotonic() - started
        say(f"{size} policies created in {setup:.0f} s; starting the operator")
        # Files are named by size and namespaces, so runs with other --namespaces keep theirs.
        label = f"{size}-ns{len(fleet.namespaces)}"
        op = OperatorProcess(settings, label)
        operators.append(op)
        first, all_once = wait_all_evaluated(op, size, timeout=max(600.0, size * 1.0))
        startup_cpu = proc_sample(op.pid).cpu_seconds
        say(f"all {size} evaluated once {all_once:.1f} s after start; settling (3 evaluations each)")
        # Capped: an operator that cannot keep up (thousands of policies) never settles; it is measured as is.
        settle = wait_settled(op, 3, timeout=max(6 * settings.interval, min(2 * all_once, 600)))
        time.sleep(settings.interval)
        window = settings.window_cycles * settings.interval
        say(f"steady window: {window} s")
        a, lines_a = take_snapshot(op, settings.kubeconfig), op.log.lines
        time.sleep(window)
        b, lines_b = take_snapshot(op, settings.kubeconfig), op.log.lines
        if not op.alive():
            raise RuntimeError(f"the operator exited during the window; see {op.log_path}")
        summary = summarise_window(settings, op, a, b, (lines_a, lines_b))
        summary["failed_scrapes"] = failed_scrapes(settings.prometheus, fleet, b.proc.at - a.proc.at)
        prof: list[str] = []
        if profile and settings.profile_seconds:
            say(f"profiling {settings.profile_seconds} s with py-spy")
            prof = record_profile(op.pid, settings.profile_seconds, label)
        return SizeResult(
            policies=size,
            interval=settings.interval,
            namespaces=len(fleet.namespaces),
            setup_seconds=setup,
            first_decision_s=first,
            all_once_s=all_once,
            startup_cpu_s=startup_cpu,
            problems=dict(op.log.problems.most_common(20)),
            events=events_by_reason(apis.core, fleet),
            status_causes=status_write_causes(op.status_trace, a.proc.at, b.proc.at),
            settle_s=settle,
            profile=prof,
            **summary,
        )


# --------------------------------------------------------------------------- report


def _fmt(value: float, digits: int = 1) -> str:
    return f"{value:,.{digits}f}"


ROWS: tuple[tuple[str, Callable[[SizeResult], str]], ...] = (
    ("policies (namespaces)", lambda r: f"{r.policies:,} ({r.namespaces})"),
    ("time to evaluate all once (s)", lambda r: _fmt(r.all_once_s)),
    ("  first decision after start (s)", lambda r: _fmt(r.first_decision_s)),
    ("  CPU until all evaluated once (s)", lambda r: _fmt(r.startup_cpu_s)),
    ("CPU per policy cycle (ms)", lambda r: _fmt(r.cpu_per_policy_cycle_ms, 2)),
    ("CPU busy in steady state (cores)", lambda r: _fmt(r.cores_busy, 2)),
    (
        "RSS window start / end / peak (MB)",
        lambda r: f"{r.rss_start_mb:.0f} / {r.rss_end_mb:.0f} / {r.rss_peak_mb:.0f}",
    ),
    ("threads", lambda r: str(r.threads)),
    ("API writes/min idle (excl. lease)", lambda r: _fmt(r.writes_per_min)),
    ("  status patches/min", lambda r: _fmt(r.status_patches_per_min)),
    ("  scale writes (operator metric)", lambda r: _fmt(r.scale_writes, 0)),
    ("  lease renewals/min", lambda r: _fmt(r.lease_writes_per_min)),
    (
        "  apiserver scalingpolicies writes/min (cluster-wide)",
        lambda r: _fmt(r.apiserver_policy_writes_per_min),
    ),
    (
        "  metric gaps: exporter scrapes failed / targets held on an absent metric",
        lambda r: f"{r.failed_scrapes} / {r.missing_metric_decisions}",
    ),
    ("API reads per policy cycle", lambda r: _fmt(r.reads_per_cycle, 2)),
    ("Prometheus requests per policy cycle", lambda r: _fmt(r.prometheus_per_cycle, 2)),
    ("policy cycles in window (expected)", lambda r: f"{r.policy_cycles:,}"),
    (
        "missed cycles (gap > 2x interval)",
        lambda r: f"{r.missed} ({r.policies_missing} policies never in window)",
    ),
    ("  leadership lost in the window (lease not renewed)", lambda r: str(r.leadership_lost)),
    (
        "period p50 / p95 / max (s)",
        lambda r: f"{r.period_p50_s:.1f} / {r.period_p95_s:.1f} / {r.period_max_s:.1f}",
    ),
    ("cycle duration, mean (ms, reconcile_seconds)", lambda r: _fmt(r.reconcile_mean_ms)),
    ("cycles/s done / needed", lambda r: f"{r.cycles_per_s:.1f} / {r.policies / r.interval:.1f}"),
    (
        f"cycles in flight (Little; the pool has {POOL} threads)",
        lambda r: _fmt(r.cycles_in_flight, 2),
    ),
    ("log lines/s", lambda r: _fmt(r.log_lines_per_s, 0)),
    ("setup: objects created in (s)", lambda r: _fmt(r.setup_seconds, 0)),
    ("settling: until every policy had 3 cycles (s)", lambda r: _fmt(r.settle_s, 0)),
    ("machine load average (1 min) after the window", lambda r: _fmt(r.load_average, 2)),
)

GROWTH: tuple[tuple[str, Callable[[SizeResult], float]], ...] = (
    ("time to evaluate all once", lambda r: r.all_once_s),
    ("CPU per policy cycle", lambda r: r.cpu_per_policy_cycle_ms),
    ("CPU busy (cores)", lambda r: r.cores_busy),
    ("RSS at window end", lambda r: r.rss_end_mb),
    ("API reads per policy cycle", lambda r: r.reads_per_cycle),
    ("writes/min idle", lambda r: r.writes_per_min),
)


def results_table(results: list[SizeResult], settings: Settings) -> list[str]:
    expected = [int(settings.window_cycles * r.policies) for r in results]
    head = "| measure | " + " | ".join(f"{r.policies:,} policies" for r in results) + " |"
    out = [head, "|---|" + "---:|" * len(results)]
    for label, cell in ROWS:
        cells = [cell(r) for r in results]
        if label.startswith("policy cycles"):
            cells = [f"{c} ({e:,})" for c, e in zip(cells, expected, strict=True)]
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return out


def growth_table(results: list[SizeResult]) -> list[str]:
    small, large = results[0], results[-1]
    factor = large.policies / small.policies
    out = [
        f"| growth {small.policies:,} -> {large.policies:,} policies (x{factor:.1f}) | {small.policies:,} | "
        f"{large.policies:,} | ratio |",
        "|---|---:|---:|---:|",
    ]
    for label, get in GROWTH:
        a, b = get(small), get(large)
        ratio = f"x{b / a:.2f}" if a else "-"
        out.append(f"| {label} | {a:,.2f} | {b:,.2f} | {ratio} |")
    return out


def breakdown_table(results: list[SizeResult]) -> list[str]:
    kinds = sorted({k for r in results for k in r.reads_by_kind})
    out = [
        "| reads per policy cycle, by request | " + " | ".join(f"{r.policies:,}" for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    out += [
        f"| {k} | " + " | ".join(f"{r.reads_by_kind.get(k, 0):.3f}" for r in results) + " |" for k in kinds
    ]
    kinds = sorted({k for r in results for k in r.writes_by_kind})
    out += [
        "",
        "| writes per minute, by request | " + " | ".join(f"{r.policies:,}" for r in results) + " |",
        "|---|" + "---:|" * len(results),
    ]
    out += [
        f"| {k} | " + " | ".join(f"{r.writes_by_kind.get(k, 0):.1f}" for r in results) + " |" for k in kinds
    ]
    return out


def line_through(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float]:
    """Intercept and slope of the line through two points (flat when the x are equal)."""
    if x1 == x0:
        return y1, 0.0
    slope = (y1 - y0) / (x1 - x0)
    return y0 - slope * x0, slope


def projection(results: list[SizeResult], interval: int, sizes: tuple[int, ...] = (1000, 3000)) -> list[str]:
    """The issue's sizes from the smallest and largest measured ones, with the same number of namespaces.
    A cycle's CPU is taken as linear in the policies per namespace (each cycle lists its namespace's HPAs),
    RSS as linear in policies. Two noisy points on a shared machine: an order of magnitude, not a forecast."""
    small, large = results[0], results[-1]
    cpu0, cpu_slope = line_through(
        small.policies / small.namespaces,
        small.cpu_per_policy_cycle_ms,
        large.policies / large.namespaces,
        large.cpu_per_policy_cycle_ms,
    )
    rss0, rss_slope = line_through(small.policies, small.rss_end_mb, large.policies, large.rss_end_mb)
    out = [
        f"- fit: CPU per cycle = {cpu0:.1f} ms + {cpu_slope:.2f} ms x policies per namespace; "
        f"RSS = {rss0:.0f} MB + {rss_slope:.2f} MB x policies",
        f"- the thread pool ({POOL} threads) keeps up only while a cycle takes at most {POOL} x {interval} s "
        f"/ policies; measured at {large.policies:,}: {large.reconcile_mean_ms:.0f} ms",
    ]
    for n in sizes:
        per_ns = n / large.namespaces
        cpu_ms = cpu0 + cpu_slope * per_ns
        out.append(
            f"- {n:,} policies in {large.namespaces} namespaces every {interval} s: {cpu_ms:.0f} ms CPU per "
            f"cycle x {n / interval:.0f} cycles/s = {cpu_ms / 1000 * n / interval:.1f} cores of Python (one "
            f"GIL: above ~1 it cannot keep up); RSS ~{rss0 + rss_slope * n:,.0f} MB; cycles must take "
            f"<= {1000 * POOL * interval / n:.0f} ms for the pool"
        )
    return out


def print_report(results: list[SizeResult], settings: Settings, machine: str) -> None:
    lines = [
        "## scalekeeper cost at scale",
        "",
        f"machine: {machine}",
        f"command: `{settings.command}`",
        f"policies: web (own Deployment + owned HPA) + {QUEUES} worker queues + read replicas = "
        f"{TARGETS_PER_POLICY} targets, {len(METRICS)} Prometheus series each, intervalSeconds "
        f"{settings.interval}, all Deployments at 0 replicas and every metric 0 (nothing to scale); "
        f"steady window {settings.window_cycles} intervals, one interval after every policy had 3 cycles; "
        f"operator env extra: {settings.operator_env or 'none'}",
        "",
        *results_table(results, settings),
        "",
    ]
    if len(results) > 1:
        lines += [*growth_table(results), ""]
    lines += [
        *breakdown_table(results),
        "",
        "projection to the issue's sizes (two-point fit):",
        *projection(results, settings.interval),
    ]
    for r in results:
        if r.events:
            lines += [
                "",
                f"Events posted on the policies at {r.policies:,} policies, since start (all writes):",
            ]
            lines += [f"- {n}: {reason}" for reason, n in r.events.items()]
        if r.status_causes:
            lines += ["", f"status patches in the window at {r.policies:,} policies, by field that changed:"]
            lines += [f"- {n}: {cause}" for cause, n in r.status_causes.items()]
        if r.problems:
            lines += ["", f"operator log warnings/errors at {r.policies:,} policies (count: message):"]
            lines += [f"- {n}: {msg}" for msg, n in r.problems.items()]
        if r.profile:
            lines += ["", f"### profile at {r.policies:,} policies", *r.profile]
    print("\n".join(lines), flush=True)


def plot(results: list[SizeResult], png: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    sizes = [r.policies for r in results]
    panels: tuple[tuple[str, Callable[[SizeResult], float]], ...] = (
        ("time to evaluate all once (s)", lambda r: r.all_once_s),
        ("CPU per policy cycle (ms)", lambda r: r.cpu_per_policy_cycle_ms),
        ("RSS at window end (MB)", lambda r: r.rss_end_mb),
        ("cycles per second done (needed: dashed)", lambda r: r.cycles_per_s),
    )
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for ax, (title, get) in zip(axes.flat, panels, strict=True):
        ax.plot(sizes, [get(r) for r in results], "o-")
        if title.startswith("cycles"):
            ax.plot(sizes, [r.policies / r.interval for r in results], "k--")
        ax.set_ylim(bottom=0)
        ax.set_title(title)
        ax.set_xlabel("policies")
        ax.grid(alpha=0.3)
    fig.suptitle("scalekeeper: cost at scale (one operator process)")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    print(f"plot: {png.relative_to(ROOT)}")


# --------------------------------------------------------------------------- main


def make_apis(kubeconfig: str, pool: int) -> tuple[client.ApiClient, Apis]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    api = client.ApiClient(cfg)
    return api, Apis(client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api))


def check_crd(api: client.ApiClient) -> None:
    try:
        client.ApiextensionsV1Api(api).read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    except ApiException as exc:
        raise SystemExit(
            f"the ScalingPolicy CRD is not installed ({exc.reason}); make cluster-up first"
        ) from exc


def saved_result(raw: dict[str, Any]) -> SizeResult:
    """A SizeResult from JSON written by an older version of this script: what it lacks is unknown (nan)."""
    defaults: dict[str, Any] = {
        "interval": 15,
        "problems": {},
        "events": {},
        "status_causes": {},
        "profile": [],
    }
    known = {f.name for f in dataclasses.fields(SizeResult)}
    missing = {name: defaults.get(name, float("nan")) for name in known - raw.keys()}
    return SizeResult(**{k: v for k, v in raw.items() if k in known}, **missing)


def report_saved(path: Path, settings: Settings) -> int:
    """The report again from a run's JSON (after the report's code changed, or to compare runs)."""
    saved = json.loads(path.read_text())
    results = [saved_result(r) for r in saved["results"]]
    ran = dataclasses.replace(
        settings,
        command=saved["command"],
        operator_env=saved.get("operator_env", {}),
        interval=results[0].interval,
        window_cycles=saved.get("window_cycles", 4),
    )
    print_report(results, ran, saved["machine"])
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    if settings.report_from:
        return report_saved(Path(settings.report_from), settings)
    api, apis = make_apis(settings.kubeconfig, settings.concurrency + 2)
    check_crd(api)
    machine = describe_machine(api)
    results: list[SizeResult] = []
    try:
        with sigterm_as_interrupt():
            for size in settings.sizes:
                results.append(measure_size(settings, apis, size, profile=size == settings.sizes[-1]))
                say(f"{size} policies: {results[-1].cpu_per_policy_cycle_ms:.2f} ms CPU per policy cycle")
    finally:
        delete_lease(settings.kubeconfig, LEASE_NAMESPACE, LEASE_NAME)
    OUT.mkdir(exist_ok=True)
    (OUT / "bench-scale.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "command": settings.command,
                "operator_env": settings.operator_env,
                "window_cycles": settings.window_cycles,
                "results": [asdict(r) for r in results],
            },
            indent=1,
        )
    )
    print_report(results, settings, machine)
    if len(results) > 1:
        plot(results, OUT / "bench-scale.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
