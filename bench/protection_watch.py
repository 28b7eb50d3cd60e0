"""What bench.protection watches while a leg runs: Prometheus vectors, the worker pods' lives (a pod watch)
and the workers' own logs (followed per pod), read by the leg to count what protection changed."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from bench.common import KUBECTL
from bench.protection_figures import PodLife, TaskEvent, parse_log


def prometheus_vector(url: str, query: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of an instant query: its labels and value."""
    with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(query)}", timeout=5) as resp:
        result = json.load(resp)["data"]["result"]
    return [(dict(r["metric"]), float(r["value"][1])) for r in result]


class PodWatch:
    """A watch on one Deployment's pods, in a thread: each pod's life in this machine's clock."""

    def __init__(self, core: client.CoreV1Api, namespace: str, selector: str) -> None:
        self.core, self.namespace, self.selector = core, namespace, selector
        self.pods: dict[str, PodLife] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _see(self, pod: Any, kind: str, now: float) -> None:
        name = pod.metadata.name
        with self.lock:
            life = self.pods.setdefault(name, PodLife(name, pod.metadata.creation_timestamp.timestamp()))
            conditions = (pod.status and pod.status.conditions) or []
            if life.ready is None and any(c.type == "Ready" and c.status == "True" for c in conditions):
                life.ready = now
            if life.deleting is None and (pod.metadata.deletion_timestamp is not None or kind == "DELETED"):
                life.deleting = now
            if kind == "DELETED" and life.gone is None:
                life.gone = now

    def _run(self) -> None:
        version: str | None = None
        while not self.stopping.is_set():
            try:
                if version is None:
                    listing = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector)
                    now = time.time()
                    listed = {p.metadata.name for p in listing.items}
                    with self.lock:  # gone while nobody watched (a relist after 410)
                        for life in self.pods.values():
                            if life.name not in listed and life.gone is None:
                                life.deleting = life.deleting or now
                                life.gone = now
                    for p in listing.items:
                        self._see(p, "ADDED", now)
                    version = listing.metadata.resource_version
                stream = watch.Watch().stream(
                    self.core.list_namespaced_pod,
                    self.namespace,
                    label_selector=self.selector,
                    resource_version=version,
                    timeout_seconds=5,
                )
                for event in stream:
                    obj = event["object"]
                    self._see(obj, event["type"], time.time())
                    version = obj.metadata.resource_version
                    if self.stopping.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    version = None
                else:
                    time.sleep(0.5)
            except Exception:  # a connection blip: watch again from where it was
                time.sleep(0.5)

    def snapshot(self) -> dict[str, PodLife]:
        with self.lock:
            return {k: PodLife(**asdict(v)) for k, v in self.pods.items()}

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=10)


@dataclass
class LogFollowers:
    """`kubectl logs -f --timestamps` of each pod into a file, from the pod's start to its end."""

    kubeconfig: str
    namespace: str
    folder: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def follow(self, pod: str) -> None:
        if pod in self.processes:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        with (self.folder / f"{pod}.log").open("wb") as out:
            self.processes[pod] = subprocess.Popen(
                [
                    KUBECTL,
                    "--kubeconfig",
                    self.kubeconfig,
                    "-n",
                    self.namespace,
                    "logs",
                    "-f",
                    "--timestamps",
                    pod,
                    "-c",
                    "worker",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self, pod: str) -> str:
        path = self.folder / f"{pod}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def pods_logging(self, needle: str) -> set[str]:
        return {p for p in self.processes if needle in self.text(p)}

    def events(self) -> list[TaskEvent]:
        return [e for p in self.processes for e in parse_log(p, self.text(p))]

    def stop(self) -> None:
        for p in self.processes.values():
            if p.poll() is None:
                p.terminate()
        for p in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=5)
