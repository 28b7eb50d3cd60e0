#!/usr/bin/env python3
"""The live part of `make demo` (hack/demo.sh): the demo's ScalingPolicy with shortened windows, the load
program, a live table of the tiers and of the policy's Events, a record of every sample, and out/demo.png.

  demo_watch.py policy [--example FILE] [--namespace demo] [--factor 4]
      the policy to apply, as YAML on stdout (what was shortened: on stderr)
  demo_watch.py app --demo-image REF --redis-image REF [--key-prefix demo:]
      the demo app's objects as YAML: render.py's, with the workers' CPU requests trimmed (why: demo_app)
  demo_watch.py run [--namespace demo] [--policy demo] [--out out]
      drive the load, show it live, record every sample, plot
  demo_watch.py plot [--out out]
      re-draw out/demo.png from the record (out/demo-run.json)

Run with the project's venv (kubernetes, PyYAML, requests, matplotlib and the scalekeeper package). The pure
parts (shortening the policy, parsing Events, the table, the plot) are unit-tested in
tests/unit/test_demo_plot.py; the cluster is only touched by Cluster, LoadProgram and `run`.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_POLICY = ROOT / "manifests" / "examples" / "scalingpolicy-demo.yaml"
GROUP, VERSION, PLURAL = "scalekeeper.dev", "v1alpha1", "scalingpolicies"
PROMETHEUS = os.environ.get("DEMO_PROMETHEUS_URL", "http://127.0.0.1:30090")
SAMPLE_SECONDS = 2.0

# The seed's numbers stay in the README and the example file; the demo divides every window, period and
# cooldown by this so a whole rise-and-fall fits in a few minutes.
DEFAULT_FACTOR = 4.0
MIN_PERIOD_SECONDS = 5  # a rate-limit period shorter than the policy's 5 s cycle would mean nothing

TIER_ORDER = ("web", "worker/video", "worker/emails", "worker/reports", "readReplicas")
TIER_COLORS = {
    "web": "#1f77b4",
    "worker/video": "#d62728",
    "worker/emails": "#9467bd",
    "worker/reports": "#8c564b",
    "readReplicas": "#2ca02c",
}


# --------------------------------------------------------------------------------------------- the policy


def add_label_matcher(query: str, label: str, value: str) -> str:
    """Narrow every metric selector of a PromQL expression to ``label="value"``.

    Handles ``name{...}`` (the matcher is appended inside the braces) and ``name[range]`` without braces
    (braces are added). A query that already mentions the label is returned unchanged. The demo shares the
    cluster's Prometheus with the tests, whose demo copies export the same metric names in other namespaces.
    """
    if re.search(rf"\b{re.escape(label)}\s*(=|!=|=~|!~)", query):
        return query
    matcher = f'{label}="{value}"'

    def braces(m: re.Match[str]) -> str:
        inner = m.group(1).strip().rstrip(",")
        return "{" + (f"{inner},{matcher}" if inner else matcher) + "}"

    out = re.sub(r"\{([^{}]*)\}", braces, query)
    # A bare metric name directly followed by a range: rate(x[30s]) -> rate(x{label="value"}[30s]).
    return re.sub(r"(?<![\w:}\]\)])([A-Za-z_:][A-Za-z0-9_:]*)\[", rf"\1{{{matcher}}}[", out)


def _shorter(seconds: int, factor: float, minimum: int) -> int:
    if seconds <= 0:
        return 0
    return max(minimum, math.ceil(seconds / factor))


@dataclass
class Shortening:
    """The policy to apply and every number changed on the way (path, example value, demo value)."""

    policy: dict[str, Any]
    changes: list[tuple[str, int, int]] = field(default_factory=list)
    queries: list[tuple[str, str]] = field(default_factory=list)
    behaviors: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)  # before, after
    cooldowns: dict[str, tuple[int, int]] = field(default_factory=dict)  # workers that may scale to zero


def _shorten_behavior(
    behavior: dict[str, Any], factor: float, path: str, changes: list[tuple[str, int, int]]
) -> None:
    for direction in ("scaleUp", "scaleDown"):
        rules = behavior.get(direction) or {}
        old = int(rules.get("stabilizationWindowSeconds", 0))
        new = _shorter(old, factor, 1)
        rules["stabilizationWindowSeconds"] = new
        if new != old:
            changes.append((f"{path}.{direction}.stabilizationWindowSeconds", old, new))
        for i, pol in enumerate(rules.get("policies") or []):
            old = int(pol["periodSeconds"])
            new = _shorter(old, factor, MIN_PERIOD_SECONDS)
            pol["periodSeconds"] = new
            if new != old:
                changes.append((f"{path}.{direction}.policies[{i}].periodSeconds", old, new))
    for key in ("scaleDownDelaySeconds", "cooldownSeconds"):
        if behavior.get(key):
            old = int(behavior[key])
            behavior[key] = _shorter(old, factor, 1)
            changes.append((f"{path}.{key}", old, behavior[key]))


def _full_behavior(tier_spec: Any) -> dict[str, Any]:
    """The tier's behavior with every default filled in (the operator's own model decides them)."""
    dumped: dict[str, Any] = tier_spec.behavior.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dumped


def shorten_policy(doc: Mapping[str, Any], namespace: str, factor: float = DEFAULT_FACTOR) -> Shortening:
    """The example policy made to fit a demo of a few minutes, and scoped to one namespace.

    Every stabilization window, rate-limit period, cooldown and delay is divided by ``factor`` (periods
    stay >= the 5 s cycle); tiers without a ``behavior`` get the HPA defaults, shortened the same way, so
    nothing waits the default 300 s. Every PromQL query is narrowed to ``namespace``: the cluster's
    Prometheus also scrapes the tests' copies of the demo app. The result is validated with the
    operator's own model.
    """
    from scalekeeper import model
    from scalekeeper.tiers.workers import worker_queries

    out = copy.deepcopy(dict(doc))
    spec_doc = out["spec"]
    spec = model.parse_spec(spec_doc)  # raises SpecError naming the field when the example is invalid
    result = Shortening(out)
    changes = result.changes

    def scoped(path: str, query: str) -> str:
        new = add_label_matcher(query, "namespace", namespace)
        result.queries.append((path, new))
        return new

    def behavior(tier: str, tier_doc: dict[str, Any], tier_spec: Any, path: str) -> None:
        tier_doc["behavior"] = _full_behavior(tier_spec)
        before = copy.deepcopy(tier_doc["behavior"])
        _shorten_behavior(tier_doc["behavior"], factor, path, changes)
        result.behaviors[tier] = (before, tier_doc["behavior"])

    if spec.web is not None:
        behavior("web", spec_doc["web"], spec.web, "web.behavior")
        if spec_doc["web"].get("requestRate"):
            rr = spec_doc["web"]["requestRate"]
            rr["query"] = scoped("web.requestRate.query", rr["query"])
    for w_doc, w in zip(spec_doc.get("workers") or [], spec.workers or [], strict=True):
        path = f"workers[{w.queue}]"
        behavior(f"worker/{w.queue}", w_doc, w, f"{path}.behavior")
        if w.min_replicas == 0:  # the cooldown only matters to a worker that may scale to zero
            old = w.cooldown_seconds
            w_doc["cooldownSeconds"] = _shorter(old, factor, 1)
            changes.append((f"{path}.cooldownSeconds", old, w_doc["cooldownSeconds"]))
            result.cooldowns[f"worker/{w.queue}"] = (old, w_doc["cooldownSeconds"])
        q = worker_queries(w)
        w_doc["metrics"] = {
            "waiting": scoped(f"{path}.metrics.waiting", q.waiting),
            "inFlight": scoped(f"{path}.metrics.inFlight", q.in_flight),
            "arrivalRate": scoped(f"{path}.metrics.arrivalRate", q.arrival_rate),
            "completionRate": scoped(f"{path}.metrics.completionRate", q.completion_rate),
        }
    if spec.read_replicas is not None:
        rr_doc = spec_doc["readReplicas"]
        behavior("readReplicas", rr_doc, spec.read_replicas, "readReplicas.behavior")
        rr_doc["metric"]["query"] = scoped("readReplicas.metric.query", rr_doc["metric"]["query"])
    model.parse_spec(spec_doc)
    out.setdefault("metadata", {}).setdefault("annotations", {})["scalekeeper.dev/demo"] = (
        f"windows, periods and cooldowns of {EXAMPLE_POLICY.name} divided by {factor:g}; "
        f"queries narrowed to namespace {namespace}"
    )
    return result


def rules_text(rules: Mapping[str, Any]) -> str:
    """``50%/15s after 15s``: one direction's rate limits (several: joined by | or &) and its window."""
    pols = []
    for p in rules.get("policies") or []:
        unit = "%" if p["type"] == "Percent" else (" pod" if p["value"] == 1 else " pods")
        pols.append(f"{p['value']}{unit}/{p['periodSeconds']}s")
    joiner = " & " if rules.get("selectPolicy") == "Min" else " | "
    text = "disabled" if rules.get("selectPolicy") == "Disabled" else joiner.join(pols)
    return f"{text} after {rules.get('stabilizationWindowSeconds', 0)}s"


def describe_shortening(s: Shortening) -> list[str]:
    """One line per target: its rules in the demo, and in brackets the example's (or the HPA defaults')."""
    lines = []
    for tier, (before, after) in s.behaviors.items():
        parts = [
            f"up {rules_text(after['scaleUp'])} ({rules_text(before['scaleUp'])})",
            f"down {rules_text(after['scaleDown'])} ({rules_text(before['scaleDown'])})",
        ]
        if tier in s.cooldowns:
            old, new = s.cooldowns[tier]
            parts.append(f"to zero after {new}s empty ({old}s)")
        lines.append(f"  {tier:<15} " + "; ".join(parts))
    return lines


# ------------------------------------------------------------------------------------------ load program


@dataclass(frozen=True)
class Step:
    at: float  # seconds after the start of the live view
    what: str  # "web" or "video"
    label: str
    args: tuple[str, ...]  # the command run in the load generator pod
    seconds: float  # how long it runs


# Web requests: a ramp to 60 req/s over a minute, held, then stopped (rows of t_seconds,arrivals per 10 s).
# 60 req/s needs 4 web pods (15 each) and 3 read replicas (20 each): with six video workers that is what a
# 2-CPU kind node has room for next to its control plane (see demo_app).
WEB_RAMP = [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60)] + [(t, 60) for t in range(60, 180, 10)]
WEB_START = 15.0
WEB_SECONDS = 180.0
WEB_URL = "http://web/?ms=2"  # 2 ms of CPU per request: the request-rate floor, not CPU, sizes web
# Video tasks: 240 tasks of 2 s at 6/s, once video has cooled down to zero and web has grown (six Celery pods
# starting at once take most of a 2-core machine for a few seconds; web would serve less meanwhile).
VIDEO_START = 100.0
VIDEO_TASKS, VIDEO_RATE, VIDEO_TASK_SECONDS = 240, 6.0, 2.0
TRACE_PATH_IN_POD = "/tmp/demo-web.csv"
_PEAK = max(r for _, r in WEB_RAMP)
_RAMP_SECONDS = min(t for t, r in WEB_RAMP if r == _PEAK)


def web_trace_csv(rows: Sequence[tuple[float, float]] = WEB_RAMP, step: float = 10.0) -> str:
    """The web ramp as a load-generator trace: per-row rate x row width arrivals, then a closing row."""
    lines = ["t_seconds,arrivals"]
    for t, rate in rows:
        lines.append(f"{t:g},{rate * step:g}")
    lines.append(f"{rows[-1][0] + step:g},0")
    return "\n".join(lines) + "\n"


def offered_rate(rel: float) -> float:
    """Requests per second the program offers at ``rel`` seconds (for the plot's dashed line)."""
    t = rel - WEB_START
    if t < 0 or t >= WEB_SECONDS:
        return 0.0
    rate = 0.0
    for start, r in WEB_RAMP:
        if t >= start:
            rate = r
    return float(rate)


def load_program() -> list[Step]:
    return [
        Step(
            WEB_START,
            "web",
            f"web: requests ramp {WEB_RAMP[0][1]} -> {_PEAK}/s over {_RAMP_SECONDS:g}s, held, stopped at "
            f"+{WEB_START + WEB_SECONDS:g}s",
            (
                "python",
                "-m",
                "scalekeeper_demo.load",
                "--url",
                WEB_URL,
                "--trace",
                TRACE_PATH_IN_POD,
                "--duration",
                f"{WEB_SECONDS:g}",
                "--concurrency",
                "32",
            ),
            WEB_SECONDS,
        ),
        Step(
            VIDEO_START,
            "video",
            f"video: {VIDEO_TASKS} tasks of {VIDEO_TASK_SECONDS:g}s at {VIDEO_RATE:g}/s",
            (
                "python",
                "-m",
                "scalekeeper_demo.produce",
                "--queue",
                "video",
                "--count",
                str(VIDEO_TASKS),
                "--rate",
                f"{VIDEO_RATE:g}",
                "--seconds",
                f"{VIDEO_TASK_SECONDS:g}",
                "--run-id",
                "demo",
            ),
            VIDEO_TASKS / VIDEO_RATE,
        ),
    ]


def phase_at(rel: float, steps: Sequence[Step]) -> str:
    """What the load program is doing at ``rel`` seconds, for the table's header."""
    parts = []
    for s in steps:
        if s.at <= rel < s.at + s.seconds:
            if s.what == "web":
                parts.append(f"web {offered_rate(rel):g} req/s offered")
            else:
                parts.append(f"publishing {s.what} tasks")
        elif rel < s.at:
            parts.append(f"{s.what} starts in {s.at - rel:.0f}s")
    return ", ".join(parts) or "load stopped: draining"


class LoadProgram:
    """Runs the steps with `kubectl exec` into the load generator pod, each at its time, in a thread."""

    def __init__(self, namespace: str, pod: str, steps: Sequence[Step], log_path: Path) -> None:
        self.namespace, self.pod, self.steps = namespace, pod, list(steps)
        self.log_path = log_path
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = 0.0
        self.failures: list[str] = []
        self.pidfiles: list[str] = []
        self._lock = threading.Lock()

    def begin(self, start: float) -> None:
        self.start = start
        self._thread.start()

    def _run(self) -> None:
        with self.log_path.open("ab") as log:
            for step in sorted(self.steps, key=lambda s: s.at):
                delay = self.start + step.at - time.time()
                if delay > 0 and self._stop.wait(delay):
                    return
                log.write(f"--- +{step.at:g}s {step.label}: {' '.join(step.args)}\n".encode())
                log.flush()
                # The step's process in the pod writes its pid first, so stop() can end it by that id.
                pidfile = f"/tmp/demo-step-{step.what}.pid"
                wrapped = ("sh", "-c", f'echo $$ > {pidfile}; exec "$@"', "sh", *step.args)
                proc = subprocess.Popen(
                    ["kubectl", "-n", self.namespace, "exec", self.pod, "--", *wrapped],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
                with self._lock:
                    self.procs.append(proc)
                    self.pidfiles.append(pidfile)

    def finished(self) -> bool:
        started = len(self.procs) == len(self.steps)
        done = started and all(p.poll() is not None for p in self.procs)
        for p in self.procs:
            if p.poll() not in (None, 0):
                msg = f"a load step exited with {p.returncode} (see {self.log_path})"
                if msg not in self.failures:
                    self.failures.append(msg)
        return done

    def stop(self, interrupted: bool = False) -> None:
        """Stops the steps not yet started and the kubectl processes this program started (by handle).
        When interrupted, also the steps' processes in the pod: Ctrl-C reaches the local kubectl, not
        what it runs there. Each is ended by the pid it wrote, if that pid still runs scalekeeper_demo."""
        self._stop.set()
        with self._lock:
            started = list(zip(self.procs, self.pidfiles, strict=True))
        running = [p for p, _ in started if p.poll() is None]
        files = " ".join(f for p, f in started if interrupted or p.poll() is None)
        if files:
            script = (
                f"for f in {files}; do if [ -f $f ]; then pid=$(cat $f); "
                "grep -q scalekeeper_demo /proc/$pid/cmdline 2>/dev/null && kill $pid; rm -f $f; fi; "
                "done; true"
            )
            subprocess.run(
                ["kubectl", "-n", self.namespace, "exec", self.pod, "--", "sh", "-c", script],
                capture_output=True,
                timeout=30,
                check=False,
            )
        for p in running:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()


# ---------------------------------------------------------------------------------------------- the app

DEMO_DIR = ROOT / "manifests" / "examples" / "demo"
# Celery workers are sized from queue depth, never from CPU, so their CPU request only decides whether a
# pod fits on the node. The manifests ask 50m per worker; on a 2-CPU kind node whose control plane and
# add-ons already request ~1.3 CPU, six video workers next to four web pods would sit Pending
# ("Insufficient cpu"). The demo asks less; web keeps its 100m, which its CPU-utilization HPA divides by.
WORKER_CPU_REQUEST = "20m"


def demo_app(images: Mapping[str, str], key_prefix: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The demo application's objects (manifests/examples/demo/render.py) and what the demo changed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_render", DEMO_DIR / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    docs: list[dict[str, Any]] = module.render(dict(images), key_prefix=key_prefix)
    notes = []
    for d in docs:
        if d.get("kind") != "Deployment" or not d["metadata"]["name"].startswith("worker-"):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            requests = c.setdefault("resources", {}).setdefault("requests", {})
            old = requests.get("cpu")
            if old != WORKER_CPU_REQUEST:
                requests["cpu"] = WORKER_CPU_REQUEST
                notes.append(f"{d['metadata']['name']} cpu request {old} -> {WORKER_CPU_REQUEST}")
    return docs, notes


# --------------------------------------------------------------------------------------------- sampling

SCALED = re.compile(
    r"^(?:Scaled|DryRun: would scale) (?P<what>web floor \(HPA minReplicas\)|\S+) "
    r"(?P<old>\d+) -> (?P<new>\d+)"
)
HPA_RESCALE = re.compile(r"New size: (?P<new>\d+)")


def parse_scaled(message: str) -> tuple[str, int, int] | None:
    """("web" | "worker/video" | "readReplicas", old, new) of a `Scaled` Event's message."""
    m = SCALED.match(message)
    if not m:
        return None
    what = m.group("what")
    tier = "web" if what.startswith("web floor") else what
    return tier, int(m.group("old")), int(m.group("new"))


def tier_of_holding(message: str) -> str | None:
    m = re.match(r"^Holding (\S+) at \d+", message)
    return m.group(1) if m else None


def _ts(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Prometheus:
    def __init__(self, url: str, namespace: str) -> None:
        import requests

        self._session = requests.Session()
        self.url = url.rstrip("/")
        sel = f'namespace="{namespace}"'
        self.queries = {
            "rps": f'sum(rate(demo_http_requests_total{{app="web",{sel}}}[10s]))',
            "video_depth": f'sum(celery_queue_waiting_tasks{{queue="video",{sel}}}) '
            f'+ sum(celery_queue_inflight_tasks{{queue="video",{sel}}})',
        }

    def instant(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for key, q in self.queries.items():
            try:
                r = self._session.get(f"{self.url}/api/v1/query", params={"query": q}, timeout=3)
                res = r.json()["data"]["result"]
                out[key] = float(res[0]["value"][1]) if res else None
            except Exception:
                out[key] = None
        return out

    def series(self, start: float, end: float, step: float = 2.0) -> dict[str, list[tuple[float, float]]]:
        out: dict[str, list[tuple[float, float]]] = {}
        for key, q in self.queries.items():
            try:
                r = self._session.get(
                    f"{self.url}/api/v1/query_range",
                    params={"query": q, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
                    timeout=15,
                )
                res = r.json()["data"]["result"]
                out[key] = [(float(t), float(v)) for t, v in res[0]["values"]] if res else []
            except Exception as exc:
                print(f"Prometheus range query {key} failed: {exc}", file=sys.stderr)
                out[key] = []
        return out


class Cluster:
    """Reads what the live view shows: the policy's status, the targets' replicas, the HPA, the Events."""

    def __init__(self, namespace: str, policy: str) -> None:
        from kubernetes import client, config

        config.load_kube_config()
        self.ns, self.policy, self.hpa = namespace, policy, f"{policy}-web"
        self.objects = client.CustomObjectsApi()
        self.apps = client.AppsV1Api()
        self.autoscaling = client.AutoscalingV2Api()
        self.core = client.CoreV1Api()
        self._seen: set[str] = set()

    def sample(self) -> dict[str, Any]:
        pol = self.objects.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, self.policy)
        status = pol.get("status") or {}
        workloads: dict[tuple[str, str], tuple[int, int]] = {}
        for d in self.apps.list_namespaced_deployment(self.ns).items:
            workloads[("Deployment", d.metadata.name)] = (d.spec.replicas or 0, d.status.ready_replicas or 0)
        for s in self.apps.list_namespaced_stateful_set(self.ns).items:
            workloads[("StatefulSet", s.metadata.name)] = (s.spec.replicas or 0, s.status.ready_replicas or 0)
        hpa: dict[str, Any] | None = None
        try:
            h = self.autoscaling.read_namespaced_horizontal_pod_autoscaler(self.hpa, self.ns)
            hpa = {
                "min": h.spec.min_replicas,
                "max": h.spec.max_replicas,
                "desired": h.status.desired_replicas,
                "current": h.status.current_replicas,
            }
        except Exception:
            hpa = None
        tiers: dict[str, dict[str, Any]] = {}
        for t in status.get("targets") or []:
            replicas, ready = workloads.get((t.get("kind", ""), t.get("targetRef", "")), (None, None))
            tiers[t["name"]] = {
                "replicas": replicas,
                "ready": ready,
                "current": t.get("currentReplicas"),
                "desired": t.get("desiredReplicas"),
                "limitedBy": t.get("limitedBy", ""),
                "reason": t.get("reason", ""),
                "metrics": t.get("metrics") or {},
            }
        if "web" in tiers and hpa is not None:
            tiers["web"]["floor"] = hpa["min"]
            tiers["web"]["hpaDesired"] = hpa["desired"]
            tiers["web"]["max"] = hpa["max"]
        conditions = {c["type"]: c.get("status") for c in status.get("conditions") or []}
        return {"tiers": tiers, "conditions": conditions, "spec": pol.get("spec") or {}}

    def new_events(self, since: float) -> list[dict[str, Any]]:
        fresh = []
        for e in self.core.list_namespaced_event(self.ns).items:
            io = e.involved_object
            if (io.kind, io.name) == ("ScalingPolicy", self.policy):
                source = "policy"
            elif (io.kind, io.name) == ("HorizontalPodAutoscaler", self.hpa):
                source = "hpa"
            else:
                continue
            when = (
                _ts(e.last_timestamp)
                or _ts(e.event_time)
                or _ts(e.metadata.creation_timestamp)
                or time.time()
            )
            key = f"{e.metadata.uid}/{e.count}"
            if key in self._seen or when < since:
                continue
            self._seen.add(key)
            fresh.append(
                {
                    "t": when,
                    "source": source,
                    "type": e.type,
                    "reason": e.reason,
                    "message": (e.message or "").strip(),
                }
            )
        return sorted(fresh, key=lambda ev: ev["t"])


def at_rest(sample: Mapping[str, Any]) -> bool:
    """Every tier back at its minimum (web floor and Deployment, workers, read-replica floor) and ready."""
    spec, tiers = sample.get("spec") or {}, sample.get("tiers") or {}
    if not tiers:
        return False
    mins: dict[str, int] = {}
    if spec.get("web"):
        mins["web"] = int(spec["web"].get("minReplicas", 1))
    for w in spec.get("workers") or []:
        mins[f"worker/{w['queue']}"] = int(w.get("minReplicas", 0))
    if spec.get("readReplicas"):
        rr = spec["readReplicas"]
        mins["readReplicas"] = int(rr.get("floor", rr.get("minReplicas", 0)))
    for name, low in mins.items():
        t = tiers.get(name)
        if t is None or t.get("replicas") != low or t.get("ready") != low or t.get("desired") != low:
            return False
        if name == "web" and t.get("floor") not in (None, low):
            return False
    return (sample.get("load") or {}).get("video_depth") in (None, 0.0)


# -------------------------------------------------------------------------------------------- the table

ANSI = {
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "red": "\x1b[31m",
    "cyan": "\x1b[36m",
    "reset": "\x1b[0m",
}


def paint(text: str, style: str, color: bool) -> str:
    return f"{ANSI[style]}{text}{ANSI['reset']}" if color else text


def _num(v: Any, fmt: str = "{:g}") -> str:
    return "-" if v is None else fmt.format(v)


def table_lines(sample: Mapping[str, Any], rel: float, phase: str, width: int, color: bool) -> list[str]:
    """The live view: a header with the load, then one row per tier (replicas, desired, HPA floor for web,
    the limiting rule and the operator's one-line reason), cut to ``width`` columns."""
    load = sample.get("load") or {}
    rps = load.get("rps")
    depth = load.get("video_depth")
    head = f"+{rel:4.0f}s  {_num(rps, '{:.1f}')} req/s  video queue {_num(depth, '{:.0f}')}  | {phase}"
    lines = [paint(head[:width], "bold", color)]
    cols = f"{'TIER':<15}{'READY/REPL':>11}{'DESIRED':>8}  {'HPA floor/want/max':<19}{'LIMITED BY':<16}REASON"
    lines.append(paint(cols[:width], "dim", color))
    tiers = sample.get("tiers") or {}
    names = [n for n in TIER_ORDER if n in tiers] + sorted(n for n in tiers if n not in TIER_ORDER)
    for name in names:
        t = tiers[name]
        repl = f"{_num(t.get('ready'))}/{_num(t.get('replicas'))}"
        hpa = ""
        if name == "web":
            hpa = f"{_num(t.get('floor'))}/{_num(t.get('hpaDesired'))}/{_num(t.get('max'))}"
        target = t.get("floor") if name == "web" else t.get("replicas")
        style = "green" if target == t.get("desired") and t.get("ready") == t.get("replicas") else "yellow"
        left = f"{name:<15}{repl:>11}{_num(t.get('desired')):>8}  {hpa:<19}{t.get('limitedBy') or '':<16}"
        line = (left + (t.get("reason") or ""))[:width]
        lines.append(paint(line[: len(left)], style, color) + line[len(left) :])
    if not names:
        lines.append("(no decision in the policy's status yet)")
    if err := sample.get("error"):
        lines.append(paint(f"(reading the cluster failed: {err})"[:width], "red", color))
    return lines


def event_line(ev: Mapping[str, Any], rel: float, width: int, color: bool) -> str:
    stamp = datetime.fromtimestamp(ev["t"], UTC).strftime("%H:%M:%S")
    rel = max(rel, 0.0)  # an Event of the policy's first cycle may carry the second before the view started
    if ev["source"] == "hpa":
        text = f"{stamp} +{rel:4.0f}s  HPA   {ev['reason']}: {ev['message']}"
        return paint(text[:width], "dim", color)
    text = f"{stamp} +{rel:4.0f}s  {ev['reason']:<8} {ev['message']}"[:width]
    style = (
        "red"
        if ev.get("type") == "Warning"
        else "green"
        if ev["reason"] in ("Scaled", "WouldScale")
        else "cyan"
    )
    return paint(text, style, color)


class LiveView:
    """Prints new Events as they come (they scroll) and redraws the table under them in place on a terminal;
    without one (a log, CI) prints the table when replicas, desired or the web floor change, or every 20 s."""

    def __init__(self, stream: Any = sys.stdout) -> None:
        self.out = stream
        self.tty = stream.isatty()
        self.color = self.tty and not os.environ.get("NO_COLOR")
        self._drawn = 0
        self._last_sig: Any = None
        self._last_print = 0.0

    def width(self) -> int:
        return max(40, shutil.get_terminal_size((140, 40)).columns - 1)

    def show(
        self,
        sample: Mapping[str, Any],
        events: Iterable[tuple[dict[str, Any], float]],
        rel: float,
        phase: str,
    ) -> None:
        w = self.width()
        ev_lines = [event_line(ev, erel, w, self.color) for ev, erel in events]
        table = table_lines(sample, rel, phase, w, self.color)
        if self.tty:
            buf = (f"\x1b[{self._drawn}F\x1b[J" if self._drawn else "") + "".join(
                line + "\n" for line in ev_lines + table
            )
            self.out.write(buf)
            self._drawn = len(table)
        else:
            sig = json.dumps(
                {
                    n: [t.get("replicas"), t.get("desired"), t.get("floor")]
                    for n, t in (sample.get("tiers") or {}).items()
                },
                sort_keys=True,
            )
            for line in ev_lines:
                self.out.write(line + "\n")
            if sig != self._last_sig or time.time() - self._last_print >= 20:
                self.out.write("\n".join(table) + "\n")
                self._last_sig, self._last_print = sig, time.time()
        self.out.flush()


# ---------------------------------------------------------------------------------------------- the plot


def _step_series(
    samples: Sequence[Mapping[str, Any]], tier: str, key: str
) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for s in samples:
        v = ((s.get("tiers") or {}).get(tier) or {}).get(key)
        if v is not None:
            xs.append(float(s["rel"]))
            ys.append(float(v))
    return xs, ys


def _value_at(samples: Sequence[Mapping[str, Any]], tier: str, rel: float) -> float | None:
    x, y = _step_series(samples, tier, "replicas")
    return next((v for xv, v in zip(reversed(x), reversed(y), strict=True) if xv <= rel), None)


def plot(record: Mapping[str, Any], path: Path) -> None:
    """Three panels sharing the time axis: the load (requests/s served and offered, video queue depth); web
    replicas, its HPA floor and the read replicas; the worker Deployments. Every `Scaled` Event is marked on
    its tier's line (a triangle up or down) and every `Holding` Event with a cross."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    samples = record.get("samples") or []
    start = float(record["start"])
    events = record.get("events") or []
    load = record.get("load") or {}
    end_rel = max([float(s["rel"]) for s in samples] or [1.0])

    fig, (ax_load, ax_web, ax_wrk) = plt.subplots(
        3, 1, figsize=(12, 10), sharex=True, gridspec_kw={"height_ratios": [5, 4, 4]}
    )
    fig.suptitle(record.get("title") or "scalekeeper demo", fontsize=11)

    # Load
    rps = [(t - start, v) for t, v in load.get("rps") or []]
    if rps:
        ax_load.plot(
            [x for x, _ in rps],
            [v for _, v in rps],
            color=TIER_COLORS["web"],
            linewidth=1.6,
            label="web requests/s served (Prometheus, rate over 10 s)",
        )
    xs = [x / 2 for x in range(int(end_rel * 2) + 1)]
    ax_load.plot(
        xs,
        [offered_rate(x) for x in xs],
        color=TIER_COLORS["web"],
        linestyle=":",
        linewidth=1,
        label="web requests/s offered by the load program",
    )
    ax_load.set_ylabel("requests / s")
    ax_q = ax_load.twinx()
    depth = [(t - start, v) for t, v in load.get("video_depth") or []]
    if depth:
        ax_q.plot(
            [x for x, _ in depth],
            [v for _, v in depth],
            color=TIER_COLORS["worker/video"],
            linewidth=1.6,
            label="video queue: waiting + in flight (right axis)",
        )
    ax_q.set_ylabel("video tasks")
    ax_q.set_ylim(bottom=0)
    ax_load.set_ylim(bottom=0)
    h1, l1 = ax_load.get_legend_handles_labels()
    h2, l2 = ax_q.get_legend_handles_labels()
    ax_load.legend(h1 + h2, l1 + l2, loc="upper right", fontsize=8)
    if not rps and not depth:
        ax_load.text(0.5, 0.5, "no load series from Prometheus", transform=ax_load.transAxes, ha="center")
    ax_load.grid(alpha=0.3)
    ax_load.set_title("load", fontsize=9, loc="left")

    # Replicas: web and the read replicas, then the workers.
    panels = {
        "web": ax_web,
        "readReplicas": ax_web,
        "worker/video": ax_wrk,
        "worker/emails": ax_wrk,
        "worker/reports": ax_wrk,
    }
    tops = {ax_web: 1.0, ax_wrk: 1.0}
    for tier in TIER_ORDER:
        x, y = _step_series(samples, tier, "replicas")
        if not x:
            continue
        ax = panels[tier]
        tops[ax] = max(tops[ax], *y)
        thin = tier in ("worker/emails", "worker/reports")
        ax.step(
            x,
            y,
            where="post",
            color=TIER_COLORS[tier],
            linewidth=1.2 if thin else 2.0,
            alpha=0.7 if thin else 1.0,
            label=f"{tier} replicas" if tier != "readReplicas" else "db-replica (read replicas)",
        )
        if tier == "web":
            fx, fy = _step_series(samples, "web", "floor")
            if fx:
                tops[ax] = max(tops[ax], *fy)
                ax.step(
                    fx,
                    fy,
                    where="post",
                    color="black",
                    linestyle="--",
                    linewidth=1.0,
                    label="web HPA floor (minReplicas, from the request rate)",
                )
    for ev in events:
        if ev.get("source") != "policy":
            continue
        rel = float(ev["t"]) - start
        parsed = parse_scaled(ev.get("message", ""))
        if parsed:
            tier, old, new = parsed
            if tier not in panels:
                continue
            panels[tier].plot(
                [rel],
                [new],
                marker="^" if new > old else "v",
                color=TIER_COLORS[tier],
                markersize=8,
                markeredgecolor="black",
                markeredgewidth=0.6,
                linestyle="none",
            )
        elif ev.get("reason") == "Holding":
            tier = tier_of_holding(ev.get("message", "")) or ""
            if tier not in panels:
                continue
            yv = _value_at(samples, tier, rel)
            panels[tier].plot(
                [rel],
                [yv if yv is not None else 0],
                marker="x",
                color=TIER_COLORS[tier],
                markersize=8,
                markeredgewidth=1.5,
                linestyle="none",
            )
    marks = [
        Line2D([], [], marker="^", color="gray", markeredgecolor="black", linestyle="none", markersize=8),
        Line2D([], [], marker="v", color="gray", markeredgecolor="black", linestyle="none", markersize=8),
        Line2D([], [], marker="x", color="gray", linestyle="none", markersize=8, markeredgewidth=1.5),
    ]
    mark_labels = ["Scaled event (up)", "Scaled event (down)", "Holding event"]
    for ax, title in ((ax_web, "web and read replicas"), (ax_wrk, "Celery workers")):
        handles, labels = ax.get_legend_handles_labels()
        ax.legend(handles + marks, labels + mark_labels, loc="upper left", fontsize=8, ncol=2)
        ax.set_ylabel("replicas")
        ax.set_ylim(-0.3, tops[ax] + 2.5)
        ax.yaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.set_title(title, fontsize=9, loc="left")
    ax_wrk.set_xlabel("seconds since the policy was applied")
    ax_wrk.set_xlim(0, end_rel)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------- main


def cmd_policy(args: argparse.Namespace) -> int:
    doc = yaml.safe_load(Path(args.example).read_text())
    s = shorten_policy(doc, args.namespace, args.factor)
    yaml.safe_dump(s.policy, sys.stdout, sort_keys=False)
    print(
        f"The demo's ScalingPolicy is {Path(args.example).relative_to(ROOT)} with every window, period and "
        "cooldown "
        f"divided by {args.factor:g}, so the demo fits in minutes (the README keeps the seed's numbers). "
        "Demo rules, and in brackets the example's (or the HPA defaults where it sets none):",
        file=sys.stderr,
    )
    print("\n".join(describe_shortening(s)), file=sys.stderr)
    print(
        f'  and every query narrowed to namespace="{args.namespace}" (Prometheus is shared with the tests).',
        file=sys.stderr,
    )
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    docs, notes = demo_app({"DEMO_IMAGE": args.demo_image, "REDIS_IMAGE": args.redis_image}, args.key_prefix)
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    if notes:
        print(
            "The demo app is manifests/examples/demo as rendered, except the workers' CPU requests "
            f"({', '.join(notes)}): queue depth sizes them, and six video workers must fit on a 2-CPU node.",
            file=sys.stderr,
        )
    return 0


def _write_record(out: Path, record: Mapping[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo-run.json").write_text(json.dumps(record, indent=1))


def cmd_run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / "demo-samples.jsonl"
    cluster = Cluster(args.namespace, args.policy)
    prom = Prometheus(PROMETHEUS, args.namespace)
    steps = load_program()

    # The web trace goes into the load generator pod first (kubectl exec -i ... cat > file).
    subprocess.run(
        [
            "kubectl",
            "-n",
            args.namespace,
            "exec",
            "-i",
            args.loadgen,
            "--",
            "sh",
            "-c",
            f"cat > {TRACE_PATH_IN_POD}",
        ],
        input=web_trace_csv().encode(),
        check=True,
    )
    view = LiveView()
    start = time.time()
    program = LoadProgram(args.namespace, args.loadgen, steps, Path(args.log))
    record: dict[str, Any] = {
        "start": start,
        "namespace": args.namespace,
        "policy": args.policy,
        "title": f"scalekeeper demo, {datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M} UTC: "
        f"ScalingPolicy {args.namespace}/{args.policy} (windows / {args.factor:g})",
        "program": [{"at": s.at, "label": s.label, "seconds": s.seconds} for s in steps],
        "samples": [],
        "events": [],
    }
    print("load program:")
    for s in steps:
        print(f"  +{s.at:>3g}s  {s.label}")
    print("live view every 2 s: Events scroll, the table stays below (Ctrl-C ends early and still plots)\n")

    interrupted = False

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    program.begin(start)
    rest_since: float | None = None
    outcome = "settled"
    try:
        with samples_path.open("w") as rec:
            while True:
                now = time.time()
                rel = now - start
                try:
                    sample = cluster.sample()
                except Exception as exc:
                    sample = {"tiers": {}, "error": f"{type(exc).__name__}: {exc}"[:200]}
                sample["load"] = prom.instant()
                sample["t"], sample["rel"] = now, round(rel, 2)
                try:
                    events = cluster.new_events(since=start - 1)
                except Exception:
                    events = []
                for ev in events:
                    ev["rel"] = round(ev["t"] - start, 2)
                record["samples"].append(sample)
                record["events"].extend(events)
                rec.write(json.dumps({k: v for k, v in sample.items() if k != "spec"}) + "\n")
                rec.flush()
                view.show(sample, [(ev, ev["rel"]) for ev in events], rel, phase_at(rel, steps))
                if program.finished() and rel > max(s.at + s.seconds for s in steps) and at_rest(sample):
                    rest_since = rest_since or now
                    if now - rest_since >= 6:
                        break
                else:
                    rest_since = None
                if rel > args.max_seconds:
                    outcome = f"stopped after {args.max_seconds:g}s without every tier back at rest"
                    break
                time.sleep(max(0.0, SAMPLE_SECONDS - (time.time() - now)))
    except KeyboardInterrupt:
        interrupted = True
        outcome = "interrupted"
    finally:
        program.stop(interrupted=interrupted)
    end = time.time()
    record["end"], record["outcome"] = end, outcome
    for f in program.failures:
        print(f"warning: {f}")
    print(f"\nlive part: {end - start:.0f}s, {outcome}.")
    scaled = [e for e in record["events"] if e["source"] == "policy" and e["reason"] == "Scaled"]
    holding = [e for e in record["events"] if e["source"] == "policy" and e["reason"] == "Holding"]
    print(
        f"Events: {len(scaled)} Scaled, {len(holding)} Holding; peak replicas: "
        + ", ".join(
            f"{tier} {max(y)}"
            for tier in TIER_ORDER
            if (y := _step_series(record["samples"], tier, "replicas")[1])
        )
    )
    record["load"] = prom.series(start - 5, end + 1)
    _write_record(out, record)
    png = out / "demo.png"
    plot(record, png)
    print(f"recorded: {samples_path} (every sample), {out / 'demo-run.json'} (samples, Events, load)")
    print(f"plot: {png.resolve()}")
    return 130 if interrupted else 0


def cmd_plot(args: argparse.Namespace) -> int:
    out = Path(args.out)
    record = json.loads((out / "demo-run.json").read_text())
    plot(record, out / "demo.png")
    print(f"plot: {(out / 'demo.png').resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("policy", help="print the demo's ScalingPolicy (example, shortened, scoped)")
    pp.add_argument("--example", default=str(EXAMPLE_POLICY))
    pp.add_argument("--namespace", default="demo")
    pp.add_argument("--factor", type=float, default=DEFAULT_FACTOR)
    pa = sub.add_parser("app", help="print the demo app's objects (render.py, worker CPU requests trimmed)")
    pa.add_argument("--demo-image", required=True)
    pa.add_argument("--redis-image", required=True)
    pa.add_argument("--key-prefix", default="demo:")
    pr = sub.add_parser("run", help="drive the load, show the tiers live, record, plot")
    pr.add_argument("--namespace", default="demo")
    pr.add_argument("--policy", default="demo")
    pr.add_argument("--loadgen", default="loadgen", help="pod the load program runs in (the demo image)")
    pr.add_argument("--out", default=str(ROOT / "out"))
    pr.add_argument("--log", default=str(ROOT / "logs" / "demo-load.log"))
    pr.add_argument("--factor", type=float, default=DEFAULT_FACTOR, help="only for the plot's title")
    pr.add_argument("--max-seconds", type=float, default=480)
    pl = sub.add_parser("plot", help="re-draw demo.png from demo-run.json")
    pl.add_argument("--out", default=str(ROOT / "out"))
    args = p.parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "policy": cmd_policy,
        "app": cmd_app,
        "run": cmd_run,
        "plot": cmd_plot,
    }
    return handlers[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
