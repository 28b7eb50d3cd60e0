"""The generated CRD on the real API server: every invalid spec is refused at apply time, naming its field,
and the pydantic model refuses the same spec naming the same field."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from scalekeeper import model
from tests.invalid_specs import INVALID_SPECS
from tests.valid_specs import VALID_SPECS

from .conftest import Cluster, kubectl
from .operator_fixture import install_crd

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def crd_installed(cluster: Cluster) -> None:
    install_crd(cluster)


def _create(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": model.API_VERSION, "kind": model.KIND, "metadata": {"name": name}, "spec": spec}
    result: dict[str, Any] = client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        model.GROUP, model.VERSION, namespace, model.PLURAL, body, field_validation="Strict"
    )
    return result


def test_the_table_is_large_enough() -> None:
    assert len(INVALID_SPECS) >= 30


@pytest.mark.parametrize(("case", "spec", "field"), INVALID_SPECS, ids=[c[0] for c in INVALID_SPECS])
def test_invalid_spec_is_rejected_by_the_api_server_naming_the_field(
    cluster: Cluster, crd_installed: None, namespace: str, case: str, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApiException) as refused:
        _create(cluster, namespace, "bad", spec)
    assert refused.value.status in (400, 422), refused.value.body
    assert field in refused.value.body, refused.value.body
    with pytest.raises(model.SpecError) as rejected:
        model.parse_spec(spec)
    assert any(field in m for m in rejected.value.messages), rejected.value.messages


@pytest.mark.parametrize(("case", "spec"), VALID_SPECS, ids=[c[0] for c in VALID_SPECS])
def test_valid_spec_is_accepted_and_defaulted_like_the_model(
    cluster: Cluster, crd_installed: None, namespace: str, case: str, spec: dict[str, Any]
) -> None:
    created = _create(cluster, namespace, "good", spec)
    # What the server stored (with its defaults) parses to the same model as the spec itself.
    assert model.parse_spec(created["spec"]) == model.parse_spec(spec)


def test_kubectl_apply_shows_the_cel_message(cluster: Cluster, crd_installed: None, namespace: str) -> None:
    manifest = (
        f"apiVersion: {model.API_VERSION}\nkind: {model.KIND}\n"
        f"metadata: {{name: inverted, namespace: {namespace}}}\n"
        "spec:\n  web: {deployment: web, minReplicas: 5, maxReplicas: 2, cpuUtilization: 70}\n"
    )
    result = kubectl(cluster, "apply", "-f", "-", stdin=manifest, check=False)
    assert result.returncode != 0
    assert "spec.web.minReplicas must be <= spec.web.maxReplicas" in result.stderr, result.stderr


def test_kubectl_explain_documents_the_workers(cluster: Cluster, crd_installed: None) -> None:
    out = kubectl(cluster, "explain", "scalingpolicy.spec.workers").stdout
    for field in ("queue", "tasksPerWorker", "prefetchMultiplier", "activationTasks", "cooldownSeconds"):
        assert field in out
    assert "Celery queue name" in out
