"""Prometheus behind a proxy that requires a bearer token over TLS with a private CA.

The proxy is the kube-apiserver's own service proxy (`/api/v1/namespaces/<ns>/services/<svc>/proxy`), a
real and common way to reach an in-cluster Prometheus: it wants a token whose identity may `create`
`services/proxy` (the reads are POSTs; `get` alone is refused), and it serves with the cluster's private
CA. The operator reaches the cluster's real Prometheus through it with the chart's settings (token file,
CA file) and sizes from it; without the token, or without the CA, the reads fail with a reason that says
which.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from scalekeeper.metrics.prometheus import Missing, PrometheusReader, Sample

from .conftest import Cluster, release_policies
from .kube_helpers import apply_policy, condition, deployment, policy_status, replicas_of
from .operator_fixture import delete_test_lease, install_crd, local_operator, stop_local
from .test_faults import replicas_policy
from .test_operator_basics import load_query, prometheus_value, start_exporter
from .waiting import wait_for

pytestmark = pytest.mark.cluster


def _api_server_and_ca(cluster: Cluster, tmp_path: Path) -> tuple[str, Path]:
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    entry = config["clusters"][0]["cluster"]
    ca = tmp_path / "cluster-ca.pem"
    ca.write_bytes(base64.b64decode(entry["certificate-authority-data"]))
    return entry["server"].rstrip("/"), ca


@pytest.fixture
def reader_token(cluster: Cluster, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A namespace outside the session operator's, with a service account allowed only to reach Prometheus
    through the proxy; yields the namespace and a file holding a token of that account."""
    core, rbac = client.CoreV1Api(cluster.api), client.RbacAuthorizationV1Api(cluster.api)
    ns = f"pa-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": ns, "labels": {"scalekeeper-test": "1"}}})
    name = f"prometheus-reader-{ns}"
    core.create_namespaced_service_account(ns, {"metadata": {"name": "reader"}})
    rbac.create_namespaced_role(
        "scalekeeper-system",
        {
            "metadata": {"name": name},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["services/proxy"],
                    "resourceNames": ["prometheus:9090"],
                    "verbs": ["create"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        "scalekeeper-system",
        {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "reader", ns, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    token_file = tmp_path / "token"
    token_file.write_text(token)
    try:
        yield ns, token_file
    finally:
        release_policies(cluster, ns)
        rbac.delete_namespaced_role_binding(name, "scalekeeper-system")
        rbac.delete_namespaced_role(name, "scalekeeper-system")
        core.delete_namespace(ns)


def test_bearer_token_and_private_ca_reach_prometheus_and_each_missing_part_is_named(
    cluster: Cluster, reader_token: tuple[str, Path], tmp_path: Path
) -> None:
    ns, token_file = reader_token
    server, ca = _api_server_and_ca(cluster, tmp_path)
    url = f"{server}/api/v1/namespaces/scalekeeper-system/services/prometheus:9090/proxy"
    start_exporter(cluster, ns, "30")
    wait_for("Prometheus to see the load", lambda: prometheus_value(cluster, load_query(ns)), timeout=120)
    query = {"load": load_query(ns)}
    token = {"Authorization": f"Bearer {token_file.read_text()}"}

    # The adapter alone, three ways: all parts, no token, no CA.
    good = PrometheusReader(url, headers=token, verify=str(ca)).read(query).readings["load"]
    assert isinstance(good, Sample) and good.value == 30.0, good
    no_token = PrometheusReader(url, verify=str(ca)).read(query).readings["load"]
    assert isinstance(no_token, Missing) and "refused the credentials" in no_token.reason, no_token
    no_ca = PrometheusReader(url, headers=token).read(query).readings["load"]
    assert isinstance(no_ca, Missing) and "TLS" in no_ca.reason, no_ca

    # The operator, configured as the chart configures it, sizes from Prometheus through the proxy.
    install_crd(cluster)
    client.AppsV1Api(cluster.api).create_namespaced_deployment(
        ns, deployment("target", 1, {"app": "target"}, cluster.operator_image)
    )
    lease = f"lease-{ns}"
    operator = local_operator(
        cluster,
        f"auth-{ns}",
        {
            "SCALEKEEPER_NAMESPACES": ns,
            "SCALEKEEPER_LEASE_NAME": lease,
            "SCALEKEEPER_PROMETHEUS_URL": url,
            "SCALEKEEPER_PROMETHEUS_BEARER_TOKEN_FILE": str(token_file),
            "SCALEKEEPER_PROMETHEUS_CA_FILE": str(ca),
        },
    )
    try:
        apply_policy(cluster, ns, "p", replicas_policy(ns, "target", 10))
        wait_for(
            "3 replicas from the load read through the proxy", lambda: replicas_of(cluster, ns, "target") == 3
        )
        # The status is written at the end of the cycle that scaled.
        wait_for(
            "MetricsAvailable=True",
            lambda: (
                (condition(policy_status(cluster, ns, "p"), "MetricsAvailable") or {}).get("status") == "True"
            ),
            timeout=30,
        )
    finally:
        release_policies(cluster, ns)
        stop_local(operator)
        delete_test_lease(cluster, lease)
