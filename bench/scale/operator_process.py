"""The operator under measure: one local `scalekeeper run` (its API requests counted by
bench.counted_operator), its log followed for decisions and problems, its figures from /proc and /metrics."""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.common import (
    LOGS,
    ROOT,
    cpu_seconds,
    free_port,
    operator_env,
    proc_status,
    run_kubectl,
    start_operator_process,
    status_mib,
    stop_process,
)
from bench.scale.settings import LEASE_NAME, LEASE_NAMESPACE, NAMESPACE_PREFIX, Settings


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
