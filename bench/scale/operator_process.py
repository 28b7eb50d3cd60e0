"""The operator under measure: local `scalekeeper run` replicas (their API requests counted by
bench.counted_operator), their logs followed for decisions and problems, their figures from /proc and
/metrics. Several replicas share the policies as the chart's do (member Leases, one group)."""

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
    free_port,
    operator_env,
    run_kubectl,
    start_operator_process,
    stop_process,
)
from bench.proc import proc_stat, proc_status, status_mib
from bench.scale.settings import LEASE_NAME, LEASE_NAMESPACE, NAMESPACE_PREFIX, Settings


@dataclass(frozen=True)
class ProcSample:
    at: float
    cpu_seconds: float
    rss_mb: float
    hwm_mb: float
    threads: int
    system_seconds: float  # of cpu_seconds, in the kernel (page faults, syscalls)
    minor_faults: int  # pages the kernel had to map: heap given back and taken again shows here


def proc_sample(pid: int) -> ProcSample:
    """utime + stime of the whole process (every thread), its kernel share, page faults and memory, from
    /proc."""
    at = time.time()
    stat = proc_stat(pid)
    status = proc_status(pid)
    return ProcSample(
        at,
        stat.cpu_seconds,
        status_mib(status, "VmRSS"),
        status_mib(status, "VmHWM"),
        int(status.get("Threads", "0")),
        stat.system_seconds,
        stat.minor_faults,
    )


_TIMESTAMP = re.compile(r'"timestamp": "(?P<ts>[^"]+)"')
_SEVERITY = re.compile(r'"severity": "(?P<sev>warning|error|critical)"')
_MESSAGE = re.compile(r'"message": "(?P<msg>(?:[^"\\]|\\.)*)"')


@dataclass
class DecisionLog:
    """Follows the operator's log: when each policy was evaluated, and every warning or error."""

    path: Path
    # A cycle logs one "decision" line per target; this tier's stands for the policy's cycle.
    cycle_target: str
    evaluations: dict[str, list[float]] = field(default_factory=dict)
    problems: Counter[str] = field(default_factory=Counter)
    # When a target held because its metric was absent (a failed scrape makes every series stale).
    missing_metric: list[float] = field(default_factory=list)
    # When the operator stopped acting because it could not renew its lease (the API server unreachable).
    leadership_lost: list[float] = field(default_factory=list)
    lines: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _decision: re.Pattern[str] = field(init=False)

    def __post_init__(self) -> None:
        self._decision = re.compile(
            r'"message": "decision", "policy": "(?P<policy>[^"]+)", "target": "'
            + re.escape(self.cycle_target)
            + '"'
        )

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
        if (m := self._decision.search(line)) and (ts := _TIMESTAMP.search(line)):
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
    """`scalekeeper run` as a local process serving only bench-scale-* namespaces, in a lease group of its
    own (`identity` its member's name)."""

    def __init__(
        self,
        settings: Settings,
        label: str,
        identity: str = "bench-scale",
        namespaces: str = f"{NAMESPACE_PREFIX}*",
        code: Path = ROOT,
    ) -> None:
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
            namespaces=namespaces,
            lease=LEASE_NAME,
            lease_namespace=LEASE_NAMESPACE,
            identity=identity,
            metrics_port=self.metrics_port,
            extra={
                # the operator's package (of the checkout measured), and this project's root for
                # `-m bench.counted_operator`
                "PYTHONPATH": os.pathsep.join(
                    filter(None, [str(code / "operator"), str(ROOT), os.environ.get("PYTHONPATH")])
                ),
                # every cycle's decision line: the gaps and evaluations are read from them
                "SCALEKEEPER_LOG_DECISIONS": "all",
                "BENCH_STATUS_TRACE": str(self.status_trace),
                **settings.operator_env,
            },
        )
        self.identity = identity
        self.started = time.time()
        # Its own session: a Ctrl-C here must not stop it before it has removed the policies' finalizers.
        self.process = start_operator_process(
            env,
            self.log_path,
            command=(sys.executable, "-m", "bench.counted_operator", str(self.counts_path)),
            new_session=True,
        )
        self.log = DecisionLog(self.log_path, settings.shape.cycle_target)
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
            "scalekeeper_cycle_delay_seconds_sum",
            "scalekeeper_cycle_delay_seconds_count",
            "scalekeeper_prometheus_query_seconds_sum",
            "scalekeeper_prometheus_query_seconds_count",
            "scalekeeper_prometheus_request_queries_sum",
            "scalekeeper_prometheus_request_queries_count",
            "scalekeeper_prometheus_request_policies_sum",
            "scalekeeper_policies",
            "scalekeeper_policies_served",
            "scalekeeper_serving",
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


class Replicas:
    """The replicas of one measure: one, or `count` sharing the policies. Their decision logs merged (a
    policy's cycles, whoever ran them), their request counts and /metrics summed; /proc per replica. Each
    measure's members have names of their own, as a rollout's new pods do: a member named as one of the
    previous measure's would find the policies still naming it and release them one at a time."""

    def __init__(self, settings: Settings, label: str, count: int, code: Path = ROOT) -> None:
        self.members = [
            OperatorProcess(
                settings,
                label if count == 1 else f"{label}-of{count}-{i}",
                f"bench-scale-{count}x{i}",
                code=code,
            )
            for i in range(count)
        ]
        self.started = min(m.started for m in self.members)

    def __len__(self) -> int:
        return len(self.members)

    @property
    def log_paths(self) -> str:
        return ", ".join(str(m.log_path) for m in self.members)

    def alive(self) -> bool:
        return all(m.alive() for m in self.members)

    def exited(self) -> OperatorProcess | None:
        return next((m for m in self.members if not m.alive()), None)

    def evaluations(self) -> dict[str, list[float]]:
        merged: dict[str, list[float]] = {}
        for m in self.members:
            for policy, times in m.log.snapshot().items():
                merged.setdefault(policy, []).extend(times)
        return merged

    def lines(self) -> int:
        return sum(m.log.lines for m in self.members)

    def problems(self) -> Counter[str]:
        return sum((m.log.problems for m in self.members), Counter[str]())

    def missing_metric(self) -> list[float]:
        return [t for m in self.members for t in m.log.missing_metric]

    def leadership_lost(self) -> list[float]:
        return [t for m in self.members for t in m.log.leadership_lost]

    def request_counts(self) -> Counter[str]:
        return sum((m.request_counts() for m in self.members), Counter[str]())

    def stop(self, timeout: float = 30) -> None:
        """Together, as a rollout's SIGTERMs come: each releases what it serves while the others go."""
        threads = [threading.Thread(target=m.stop, args=(timeout,)) for m in self.members]
        for t in threads:
            t.start()
        for t in threads:
            t.join()


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
