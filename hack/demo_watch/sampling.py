"""What the live view samples: the policy's status, the targets' replicas, the web HPA, the Events (and what
they say), the load from Prometheus; and when every tier is back at rest."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

GROUP, VERSION, PLURAL = "scalekeeper.dev", "v1alpha1", "scalingpolicies"


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
        found = next((c for c in status.get("conditions") or [] if c["type"] == "Bottleneck"), None)
        bottleneck = (
            None if found is None else {"status": found.get("status"), "message": found.get("message")}
        )
        return {
            "tiers": tiers,
            "conditions": conditions,
            "bottleneck": bottleneck,
            "spec": pol.get("spec") or {},
        }

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
