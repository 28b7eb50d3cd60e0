"""Measuring one size: the operator's start, then a steady window between two snapshots (CPU, RSS,
requests, cycles and their gaps, status writes and why), a profile at the largest size."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from bench import profile_summary
from bench.common import ROOT, percentile, prometheus_scalar, wait_for
from bench.scale import machine
from bench.scale.fleet import Apis, Fleet, build_fleet, delete_namespaces, delete_policies, namespace_names
from bench.scale.operator_process import (
    OperatorProcess,
    ProcSample,
    Replicas,
    apiserver_policy_requests,
    proc_sample,
)
from bench.scale.settings import API_ERRORS, NAMESPACE_PREFIX, OUT, Settings, code_version
from bench.scale.status_causes import status_write_causes

IDLE_MACHINE_SECONDS = 30.0

# --------------------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Snapshot:
    procs: list[ProcSample]  # one per replica
    requests: Counter[str]  # summed over the replicas
    own_each: list[dict[str, float]]  # each replica's /metrics
    apiserver: Counter[str]
    machine: machine.MachineCpu

    @property
    def at(self) -> float:
        return self.procs[0].at

    @property
    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds for p in self.procs)

    @property
    def system_seconds(self) -> float:
        return sum(p.system_seconds for p in self.procs)

    @property
    def minor_faults(self) -> int:
        return sum(p.minor_faults for p in self.procs)

    @property
    def own(self) -> dict[str, float]:
        summed: Counter[str] = Counter()
        for own in self.own_each:
            summed.update(own)
        return dict(summed)


def take_snapshot(ops: Replicas, kubeconfig: str) -> Snapshot:
    procs = [proc_sample(m.pid) for m in ops.members]
    own = [m.own_metrics() for m in ops.members]
    apiserver = apiserver_policy_requests(kubeconfig)
    return Snapshot(procs, ops.request_counts(), own, apiserver, machine.sample())


def per_replica(a: Snapshot, b: Snapshot) -> list[dict[str, float]]:
    """Each replica over the window: the policies it served at its end, its CPU and memory."""
    seconds = b.at - a.at
    return [
        {
            "served": own["scalekeeper_policies_served"],
            "cores_busy": (pb.cpu_seconds - pa.cpu_seconds) / seconds,
            "rss_end_mb": pb.rss_mb,
            "rss_peak_mb": pb.hwm_mb,
        }
        for pa, pb, own in zip(a.procs, b.procs, b.own_each, strict=True)
    ]


@dataclass
class SizeResult:
    policies: int
    batching: str
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
    prometheus_requests_per_s: float
    queries_per_request: float
    policies_per_request: float
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
    # Replicas sharing the policies; with more than one, the RSS and thread figures above are the largest
    # replica's, the CPU and request figures the sum over them.
    replicas: int = 1
    per_replica: list[dict[str, float]] = field(default_factory=list)
    # The operator's code measured: the checkout's commit (see --code).
    code: str = ""
    # Cores busy over the window: the whole machine ("all") and its busiest programs (bench.scale.machine).
    machine_cores: dict[str, float] = field(default_factory=dict)
    machine_idle_cores: dict[str, float] = field(default_factory=dict)  # the fleet, before any operator
    system_cpu_share: float = float("nan")  # of the replicas' CPU, the kernel's
    minor_faults_per_cycle: float = float("nan")
    cycle_delay_mean_s: float = float("nan")


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


def check_alive(ops: Replicas) -> None:
    if (gone := ops.exited()) is not None:
        raise RuntimeError(f"the operator exited ({gone.process.returncode}); see {gone.log_path}")


def wait_all_evaluated(ops: Replicas, size: int, timeout: float) -> tuple[float, float]:
    """Seconds from the replicas' start to the first decision and to every policy's first one."""
    deadline = time.monotonic() + timeout
    while len(evals := ops.evaluations()) < size:
        check_alive(ops)
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(evals)}/{size} policies evaluated after {timeout:.0f} s")
        time.sleep(0.5)
    firsts = [min(times) for times in evals.values()]
    return min(firsts) - ops.started, max(firsts) - ops.started


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


def wait_settled(ops: Replicas, evaluations: int, timeout: float) -> float:
    """Wait until every policy was evaluated `evaluations` times: its first cycles create the HPA, post
    Events and write status twice (before and after the HPA exists), which is start-up, not idle cost.
    Returns the seconds waited (the timeout when some policies are too slow to get there)."""
    started = time.monotonic()
    with contextlib.suppress(TimeoutError):
        wait_for(
            f"every policy evaluated {evaluations} times",
            lambda: min(len(t) for t in ops.evaluations().values()) >= evaluations,
            timeout,
            every=1.0,
            retry_on=API_ERRORS,
        )
    return time.monotonic() - started


def per_minute(n: float, seconds: float) -> float:
    return n * 60 / seconds if seconds else float("nan")


def summarise_window(
    settings: Settings, ops: Replicas, a: Snapshot, b: Snapshot, lines: tuple[int, int]
) -> dict[str, Any]:
    seconds = b.at - a.at
    evals = ops.evaluations()
    cycles = evaluations_in(evals, a.at, b.at)
    reads, writes = split_requests(b.requests - a.requests)
    # Each ratio takes its numerator and denominator from the same snapshot (log, counts file, /metrics).
    counted_cycles = max(b.requests["cycles"] - a.requests["cycles"], 1)
    lease = sum(n for k, n in writes.items() if " leases" in k)
    own_a, own_b = a.own, b.own
    own = {k: own_b[k] - own_a.get(k, 0.0) for k in own_b}
    gaps = cycle_gaps(evals, a.at, b.at)
    delays = own["scalekeeper_cycle_delay_seconds_count"]
    apiserver = b.apiserver - a.apiserver
    return {
        "window_s": seconds,
        "policy_cycles": cycles,
        "cpu_per_policy_cycle_ms": 1000 * (b.cpu_seconds - a.cpu_seconds) / max(cycles, 1),
        "system_cpu_share": (b.system_seconds - a.system_seconds) / max(b.cpu_seconds - a.cpu_seconds, 1e-9),
        "minor_faults_per_cycle": (b.minor_faults - a.minor_faults) / max(cycles, 1),
        "cores_busy": (b.cpu_seconds - a.cpu_seconds) / seconds,
        "rss_start_mb": max(p.rss_mb for p in a.procs),
        "rss_end_mb": max(p.rss_mb for p in b.procs),
        "rss_peak_mb": max(p.hwm_mb for p in b.procs),
        "threads": max(p.threads for p in b.procs),
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
        "prometheus_requests_per_s": own["scalekeeper_prometheus_requests_total"] / seconds,
        "queries_per_request": own["scalekeeper_prometheus_request_queries_sum"]
        / max(own["scalekeeper_prometheus_request_queries_count"], 1),
        "policies_per_request": own["scalekeeper_prometheus_request_policies_sum"]
        / max(own["scalekeeper_prometheus_request_queries_count"], 1),
        "reads_per_cycle": sum(n for k, n in reads.items() if k.startswith("client ")) / counted_cycles,
        "reads_by_kind": {k: round(n / counted_cycles, 3) for k, n in reads.most_common()},
        "writes_by_kind": {k: round(per_minute(n, seconds), 2) for k, n in writes.most_common()},
        "reconcile_mean_ms": 1000
        * own["scalekeeper_reconcile_seconds_sum"]
        / max(own["scalekeeper_reconcile_seconds_count"], 1),
        "missed": sum(1 for g in gaps if g > 2 * settings.interval),
        "policies_missing": len(
            [p for p, times in evals.items() if not any(a.at < t <= b.at for t in times)]
        ),
        "period_p50_s": percentile(gaps, 0.5),
        "period_p95_s": percentile(gaps, 0.95),
        "period_max_s": max(gaps, default=float("nan")),
        "log_lines_per_s": (lines[1] - lines[0]) / seconds,
        # Little's law: cycles running at once on average; against the thread pool's size it tells whether
        # the policies wait for a thread rather than for the CPU or the API server.
        "missing_metric_decisions": sum(1 for t in ops.missing_metric() if a.at < t <= b.at),
        "leadership_lost": sum(1 for t in ops.leadership_lost() if a.at < t <= b.at),
        "cycles_per_s": own["scalekeeper_reconcile_seconds_count"] / seconds,
        "cycles_in_flight": own["scalekeeper_reconcile_seconds_sum"] / seconds,
        # none counted: a checkout (--code) from before the operator measured it
        "cycle_delay_mean_s": own["scalekeeper_cycle_delay_seconds_sum"] / delays if delays else float("nan"),
        "machine_cores": machine.cores_by_program(a.machine, b.machine, seconds),
        # The cluster is shared: how busy the machine was says how much to trust the CPU figures.
        "load_average": os.getloadavg()[0],
    }


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


# --------------------------------------------------------------------------- one size


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def idle_rss_mb(settings: Settings) -> float:
    """RSS of a replica that sees no policy at all (its namespace has none), once it serves: the fixed
    part of the memory model, beside what each policy seen and served adds."""
    op = OperatorProcess(settings, "idle", "bench-scale-idle", namespaces=f"{NAMESPACE_PREFIX}idle-none")
    try:
        wait_for(
            "the idle replica serving",
            lambda: op.own_metrics()["scalekeeper_serving"] == 1,
            timeout=120,
            every=1.0,
            retry_on=(OSError, ValueError),
        )
        return proc_sample(op.pid).rss_mb
    finally:
        op.stop()


@contextlib.contextmanager
def fleet_of(settings: Settings, apis: Apis, size: int) -> Iterator[tuple[Fleet, list[Replicas]]]:
    """The fleet, and a slot for the replicas running at the end; on the way out (also on error or Ctrl-C)
    the policies go while the replicas still run, then the replicas, then the namespaces."""
    run = uuid.uuid4().hex[:6]
    fleet = Fleet(run, size, namespace_names(run, min(settings.namespaces, size)))
    running: list[Replicas] = []
    try:
        yield fleet, running
    finally:
        say(f"cleanup: {size} policies, then the operator, then {len(fleet.namespaces)} namespaces")
        ops = running[-1] if running else None
        delete_policies(apis.objects, fleet, ops)
        if ops is not None:
            ops.stop()
        delete_namespaces(apis.core, fleet, wait_seconds=120 + size / 2)


def measure_size(
    settings: Settings,
    apis: Apis,
    size: int,
    measured: Callable[[SizeResult], None],
    profile: bool,
    batching: str = "on",
) -> None:
    """One fleet of `size` policies, measured under each replica count in turn (one after the other, so
    every count sees the same objects); each result goes to `measured` as soon as it is taken."""
    with fleet_of(settings, apis, size) as (fleet, running):
        started = time.monotonic()
        say(
            f"{size} policies: creating {len(fleet.namespaces)} namespaces, exporter, "
            f"{size * len(settings.shape.targets)} targets ({settings.shape.name} fleet)"
        )
        build_fleet(settings, apis, fleet)
        setup = time.monotonic() - started
        # The fleet with no operator: what the kind node and the bench's exporter keep busy anyway.
        idle = machine.cores_over(IDLE_MACHINE_SECONDS)
        turns = [(count, i, code) for count in settings.replicas for i, code in enumerate(settings.code)]
        for n, (count, i, code) in enumerate(turns):
            if running:
                running.pop().stop()
            version = code_version(code)
            say(
                f"{size} policies created in {setup:.0f} s; starting {count} operator replica(s) of {version}"
            )
            # Files are named by size and namespaces, so runs with other --namespaces keep theirs.
            label = (
                f"{size}-ns{len(fleet.namespaces)}"
                + ("" if batching == "on" else f"-batching-{batching}")
                + ("" if len(settings.code) == 1 else f"-code{i}")
            )
            ops = Replicas(settings.for_batching(batching), label, count, code)
            running.append(ops)
            result = measure_replicas(settings, apis, fleet, ops, profile and n == 0, label)
            measured(
                dataclasses.replace(
                    result, batching=batching, setup_seconds=setup, code=version, machine_idle_cores=idle
                )
            )


def measure_replicas(
    settings: Settings, apis: Apis, fleet: Fleet, ops: Replicas, profile: bool, label: str
) -> SizeResult:
    size = fleet.size
    first, all_once = wait_all_evaluated(ops, size, timeout=max(600.0, size * 1.0))
    startup_cpu = sum(proc_sample(m.pid).cpu_seconds for m in ops.members)
    say(f"all {size} evaluated once {all_once:.1f} s after start; settling (3 evaluations each)")
    # Capped: an operator that cannot keep up (thousands of policies) never settles; it is measured as is.
    settle = wait_settled(ops, 3, timeout=max(6 * settings.interval, min(2 * all_once, 600)))
    time.sleep(settings.interval)
    window = settings.window_cycles * settings.interval
    say(f"steady window: {window} s")
    a, lines_a = take_snapshot(ops, settings.kubeconfig), ops.lines()
    time.sleep(window)
    b, lines_b = take_snapshot(ops, settings.kubeconfig), ops.lines()
    check_alive(ops)
    summary = summarise_window(settings, ops, a, b, (lines_a, lines_b))
    summary["failed_scrapes"] = failed_scrapes(settings.prometheus, fleet, b.at - a.at)
    prof: list[str] = []
    if profile and settings.profile_seconds:
        say(f"profiling {settings.profile_seconds} s with py-spy")
        prof = record_profile(ops.members[0].pid, settings.profile_seconds, label)
    causes: Counter[str] = Counter()
    for m in ops.members:
        causes.update(status_write_causes(m.status_trace, a.at, b.at))
    return SizeResult(
        policies=size,
        batching="on",
        interval=settings.interval,
        namespaces=len(fleet.namespaces),
        setup_seconds=0.0,
        first_decision_s=first,
        all_once_s=all_once,
        startup_cpu_s=startup_cpu,
        problems=dict(ops.problems().most_common(20)),
        events=events_by_reason(apis.core, fleet),
        status_causes=dict(causes.most_common(12)),
        settle_s=settle,
        profile=prof,
        replicas=len(ops),
        per_replica=per_replica(a, b),
        **summary,
    )
