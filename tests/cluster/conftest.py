"""Session fixtures for tests against the real kind cluster.

The cluster is reused when it is up (`make cluster-up` leaves it running) and brought up otherwise. Each
test gets a fresh namespace, deleted afterwards.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("SCALEKEEPER_CACHE", Path.home() / ".cache" / "scalekeeper"))
STATE = CACHE / "state"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: str
    api: client.ApiClient
    prometheus_url: str
    redis_url: str
    registry: str
    image_mode: str
    guard_interface: str
    images: dict[str, str]
    name: str = "scalekeeper"

    @property
    def node_container(self) -> str:
        """The kind node's container (one node: the control plane)."""
        return f"{self.name}-control-plane"

    @property
    def operator_image(self) -> str:
        return os.environ.get("SCALEKEEPER_IMAGE", f"{self.registry}/scalekeeper:dev")


def _read_env(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def _cluster_reachable() -> bool:
    return (
        subprocess.run(
            [str(ROOT / "hack" / "cluster.sh"), "status"], capture_output=True, check=False
        ).returncode
        == 0
    )


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    if not (STATE / "cluster.env").exists() or not _cluster_reachable():
        subprocess.run([str(ROOT / "hack" / "cluster.sh"), "up"], check=True)
    env = _read_env(STATE / "cluster.env")
    images = _read_env(STATE / "images.env")
    api = config.new_client_from_config(config_file=env["KUBECONFIG"])
    return Cluster(
        kubeconfig=env["KUBECONFIG"],
        api=api,
        prometheus_url=env["PROMETHEUS_URL"],
        redis_url=env["REDIS_URL"],
        registry=env["SCALEKEEPER_REGISTRY"],
        image_mode=env["SCALEKEEPER_IMAGE_MODE"],
        guard_interface=env.get("SCALEKEEPER_GUARD_INTERFACE", ""),
        images=images,
        name=env.get("SCALEKEEPER_CLUSTER", "scalekeeper"),
    )


@pytest.fixture
def namespace(cluster: Cluster) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={"scalekeeper-test": "1"}))
    )
    try:
        yield name
    finally:
        release_policies(cluster, name)
        core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def unserved_namespace(cluster: Cluster) -> Iterator[str]:
    """A namespace outside the session operator's t-*/demo-*: only the test's own operators act in it."""
    name = f"sh-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(cluster.api)
    core.create_namespace({"metadata": {"name": name, "labels": {"scalekeeper-test": "1"}}})
    try:
        yield name
    finally:
        release_policies(cluster, name)
        core.delete_namespace(name, propagation_policy="Background")


def release_policies(cluster: Cluster, namespace: str, timeout: float = 30.0) -> None:
    """Delete a namespace's ScalingPolicies and wait until they are gone. They carry no finalizer, but one
    left by an earlier build would hold a namespace deleted at the end of a session in Terminating."""
    objects = client.CustomObjectsApi(cluster.api)
    group, version, plural = "scalekeeper.dev", "v1alpha1", "scalingpolicies"
    try:
        for item in objects.list_namespaced_custom_object(group, version, namespace, plural)["items"]:
            objects.delete_namespaced_custom_object(
                group, version, namespace, plural, item["metadata"]["name"]
            )
    except client.ApiException:
        return  # no CRD yet: nothing to release
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not objects.list_namespaced_custom_object(group, version, namespace, plural)["items"]:
            return
        time.sleep(0.5)


def tool_env() -> dict[str, str]:
    """The environment with the pinned builds (kubectl, helm, kind) first on PATH."""
    return {**os.environ, "PATH": f"{CACHE / 'bin' / 'current'}:{os.environ['PATH']}"}


def kubectl(
    cluster: Cluster, *args: str, stdin: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """kubectl from the pinned build, against the test cluster."""
    return subprocess.run(
        ["kubectl", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=check,
        env={**tool_env(), "KUBECONFIG": cluster.kubeconfig},
    )


# The operator fixture lives in its own module; importing it here makes it visible to every test module.
from .operator_fixture import running_operator  # noqa: E402, F401
