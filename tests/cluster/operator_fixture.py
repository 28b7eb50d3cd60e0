"""Runs the operator under test: as a local process (fast iteration) or in the cluster from the chart.

SCALEKEEPER_E2E_OPERATOR=local (default) starts `scalekeeper run` from the project's venv against the kind
cluster, with Prometheus reached through its loopback NodePort. `=cluster` installs the Helm chart with the
image built by `make image` and runs the same tests against the in-cluster operator.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client

from scalekeeper.kube.membership import GROUP_LABEL

from .conftest import ROOT, Cluster, kubectl, tool_env
from .waiting import metric_sum, wait_for

CRD = ROOT / "crds" / "scalingpolicies.scalekeeper.dev.yaml"
CHART = ROOT / "manifests" / "chart" / "scalekeeper"
LOG_DIR = ROOT / "logs"
LEASE = "scalekeeper-leader"
LEASE_NAMESPACE = "scalekeeper-system"
# The session operator (local or in-cluster) serves only the tests' namespaces, so a test can run its own
# operators in a namespace outside these (test_faults' restart test) without a second actor on its policy.
SERVED_NAMESPACES = ("t-*", "demo-*")


@dataclass
class RunningOperator:
    mode: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    # In-cluster: the cluster whose operator pods' logs logs() and metrics metrics_text() read.
    cluster: Cluster | None = None
    # Local: the port of its /metrics on 127.0.0.1.
    metrics_port: int | None = None

    def logs(self) -> str:
        if self.log_path is not None and self.log_path.exists():
            return self.log_path.read_text(errors="replace")
        if self.cluster is not None:
            return kubectl(
                self.cluster,
                "-n",
                "scalekeeper-system",
                "logs",
                "-l",
                "app.kubernetes.io/name=scalekeeper",
                "--tail=-1",
                "--prefix",
                check=False,
            ).stdout
        return ""

    def metrics_text(self) -> str:
        """Its own /metrics (Prometheus text): a local process's from its port; in-cluster, the one member
        pod's, through the API server's pod proxy (no port-forward to keep alive)."""
        if self.metrics_port is not None:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as resp:
                return str(resp.read().decode())
        if self.cluster is None:
            raise RuntimeError(f"{self.mode} operator serves no metrics")
        members = client.CoordinationV1Api(self.cluster.api).list_namespaced_lease(
            LEASE_NAMESPACE, label_selector=f"{GROUP_LABEL}={LEASE}"
        )
        pods = sorted(lease.spec.holder_identity for lease in members.items if lease.spec.holder_identity)
        if len(pods) != 1:
            raise RuntimeError(f"expected one in-cluster operator replica, found members {pods}")
        return pod_metrics_text(self.cluster, LEASE_NAMESPACE, pods[0])


def pod_metrics_text(cluster: Cluster, namespace: str, pod: str) -> str:
    """An operator pod's /metrics (its port named `metrics`), through the API server's pod proxy."""
    core = client.CoreV1Api(cluster.api)
    port = next(
        p.container_port
        for c in core.read_namespaced_pod(pod, namespace).spec.containers
        for p in c.ports or []
        if p.name == "metrics"
    )
    resp = core.connect_get_namespaced_pod_proxy_with_path(
        f"{pod}:{port}", namespace, "metrics", _preload_content=False
    )
    return str(resp.data.decode())


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a local operator's metrics."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install_crd(cluster: Cluster) -> None:
    kubectl(cluster, "apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    kubectl(
        cluster,
        "wait",
        "--for=condition=Established",
        "--timeout=180s",
        "crd/scalingpolicies.scalekeeper.dev",
    )


def local_operator(
    cluster: Cluster, identity: str = "local-e2e", extra_env: dict[str, str] | None = None
) -> RunningOperator:
    LOG_DIR.mkdir(exist_ok=True)
    log_path = LOG_DIR / f"operator-{identity}.log"
    metrics_port = int((extra_env or {}).get("SCALEKEEPER_METRICS_PORT") or 0) or free_port()
    env = {
        **os.environ,
        "KUBECONFIG": cluster.kubeconfig,
        "SCALEKEEPER_PROMETHEUS_URL": cluster.prometheus_url,
        "SCALEKEEPER_METRICS_PORT": str(metrics_port),
        "SCALEKEEPER_HEALTH_PORT": "0",
        "SCALEKEEPER_LEASE_NAMESPACE": LEASE_NAMESPACE,
        "SCALEKEEPER_LEASE_SECONDS": "6",
        "POD_NAME": identity,
        "SCALEKEEPER_NAMESPACES": ",".join(SERVED_NAMESPACES),
        **(extra_env or {}),
    }
    out = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "scalekeeper.cli", "run"],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    return RunningOperator("local", process, log_path, metrics_port=metrics_port)


def stop_local(op: RunningOperator) -> None:
    if op.process is not None and op.process.poll() is None:
        op.process.send_signal(signal.SIGTERM)
        try:
            op.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            op.process.kill()
            op.process.wait()


def delete_test_lease(cluster: Cluster, name: str) -> None:
    """Delete the member Leases of a test's own operators (local_operator with SCALEKEEPER_LEASE_NAME), once
    they are stopped: a stopped member deletes its own, a killed one leaves it, and they would pile up in
    scalekeeper-system. Never the session operator's group."""
    if name == LEASE:
        raise ValueError(f"{LEASE} is the session operator's group")
    client.CoordinationV1Api(cluster.api).delete_collection_namespaced_lease(
        LEASE_NAMESPACE, label_selector=f"{GROUP_LABEL}={name}"
    )


def release_options(cluster: Cluster, namespace: str) -> list[str]:
    """What every test's `helm install`/`upgrade` of the chart passes: its namespace, waiting until ready,
    and the image under test (pulled again: it was just pushed under a reused tag)."""
    repo, _, tag = cluster.operator_image.rpartition(":")
    return [
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        "300s",
        "--set",
        f"image.repository={repo}",
        "--set",
        f"image.tag={tag}",
        "--set",
        "image.pullPolicy=Always",
    ]


def _in_cluster(cluster: Cluster) -> RunningOperator:
    subprocess.run(
        [
            "helm",
            "upgrade",
            "--install",
            "scalekeeper",
            str(CHART),
            "--kubeconfig",
            cluster.kubeconfig,
            *release_options(cluster, "scalekeeper-system"),
            "--set",
            "prometheus.url=http://prometheus.scalekeeper-system.svc:9090",
            "--set",
            f"watchNamespacePatterns={{{','.join(SERVED_NAMESPACES)}}}",
        ],
        check=True,
        env=tool_env(),
    )
    # The tag is reused between builds: restart so the pod runs the image just pushed.
    kubectl(cluster, "-n", "scalekeeper-system", "rollout", "restart", "deploy/scalekeeper")
    kubectl(cluster, "-n", "scalekeeper-system", "rollout", "status", "deploy/scalekeeper", "--timeout=180s")
    op = RunningOperator("cluster", cluster=cluster)
    # metrics_text() reads the one member's metrics: none until the restarted pod renews its Lease and the
    # replaced one has deleted its own.
    wait_serving(op, "the in-cluster operator", timeout=90)
    return op


def wait_serving(op: RunningOperator, what: str, timeout: float) -> None:
    """Until the operator serves: its member Lease renewed, the ring known (its scalekeeper_serving)."""
    wait_for(
        f"{what} to serve",
        lambda: (
            (op.process is None or op.process.poll() is None)
            and metric_sum(op.metrics_text(), "scalekeeper_serving") == 1
        ),
        timeout=timeout,
    )


def _uninstall_in_cluster(cluster: Cluster) -> None:
    """A release left by an earlier in-cluster run would hold the lease and size the tests' policies."""
    subprocess.run(
        [
            "helm",
            "uninstall",
            "scalekeeper",
            "--namespace",
            "scalekeeper-system",
            "--kubeconfig",
            cluster.kubeconfig,
            "--wait",
            "--ignore-not-found",
        ],
        check=False,
        capture_output=True,
        env=tool_env(),
    )


@pytest.fixture(scope="session")
def running_operator(cluster: Cluster) -> Iterator[RunningOperator]:
    install_crd(cluster)
    mode = os.environ.get("SCALEKEEPER_E2E_OPERATOR", "local")
    if mode == "cluster":
        try:
            yield _in_cluster(cluster)
        finally:
            # A clusterwide operator left running would also size policies of a later `make demo`.
            _uninstall_in_cluster(cluster)
        return
    _uninstall_in_cluster(cluster)
    op = local_operator(cluster)
    wait_serving(op, "the local operator", timeout=60)
    try:
        yield op
    finally:
        stop_local(op)
        time.sleep(0.1)
