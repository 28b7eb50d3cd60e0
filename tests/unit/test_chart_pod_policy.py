"""Busy-worker protection in the chart, rendered with the real helm binary (test_chart's helpers): the `pods`
rule (list, watch, patch) wherever the operator's rules go, and the ValidatingAdmissionPolicy that limits the
operator's pod updates to the controller.kubernetes.io/pod-deletion-cost annotation: its match on UPDATE of
pods, its matchCondition on exactly the operator's ServiceAccount, its binding, the value that turns it off,
and the schema refusing a bad value. What the policy's CEL admits and refuses is tested against the API
server: tests/cluster/test_chart_lifecycle.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.unit.helm_chart import (
    FULLNAME,
    NAMESPACE,
    Helm,
    assert_refused,
    grants,
    helm,
    of_kind,
    one,
    render,
)

__all__ = ["helm"]

COST = "controller.kubernetes.io/pod-deletion-cost"
POLICY = f"{NAMESPACE}-{FULLNAME}-pod-deletion-cost"
PODS = ("", "pods", ())


def policy_of(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    return one(docs, "ValidatingAdmissionPolicy"), one(docs, "ValidatingAdmissionPolicyBinding")


def username_of(policy: dict[str, Any]) -> str:
    """The one user the policy applies to, read from its only matchCondition (`request.userInfo.username ==
    "..."`)."""
    (condition,) = policy["spec"]["matchConditions"]
    left, _, right = condition["expression"].partition("==")
    assert left.strip() == "request.userInfo.username", condition
    quoted = str(right).strip()
    assert quoted[0] == quoted[-1] == '"', condition
    return quoted[1:-1]


def test_the_operators_rules_grant_list_watch_and_patch_on_pods(helm: Helm, tmp_path: Path) -> None:
    assert grants(one(render(helm, tmp_path, {}), "ClusterRole"))[PODS] == {"list", "watch", "patch"}
    served = render(helm, tmp_path, {"watchNamespaces": ["shop", "billing"]})
    roles = [r for r in of_kind(served, "Role") if r["metadata"]["name"] == FULLNAME]
    assert {r["metadata"]["namespace"] for r in roles} == {"shop", "billing"}
    for role in roles:
        assert grants(role)[PODS] == {"list", "watch", "patch"}
    # Nothing else on pods: no get, no delete, no subresource (eviction, exec, status).
    lease = [r for r in of_kind(served, "Role") if r["metadata"]["name"] != FULLNAME]
    for role in roles + lease:
        assert [k for k in grants(role) if k[1].startswith("pods")] in ([PODS], [])


def test_the_policy_matches_pod_updates_and_denies(helm: Helm, tmp_path: Path) -> None:
    policy, binding = policy_of(render(helm, tmp_path, {}))
    # Cluster-scoped: named with the release namespace, as the ClusterRole, so two releases do not collide.
    assert policy["metadata"]["name"] == POLICY and "namespace" not in policy["metadata"]
    assert policy["apiVersion"] == binding["apiVersion"] == "admissionregistration.k8s.io/v1"
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    # A PATCH is an UPDATE in admission; RBAC gives the operator no other write on pods.
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["pods"]}
    ]
    assert binding["metadata"]["name"] == POLICY and binding["spec"]["policyName"] == POLICY
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert "paramRef" not in binding["spec"] and "paramKind" not in spec


def test_the_policy_compares_what_a_pod_update_can_change(helm: Helm, tmp_path: Path) -> None:
    """Spec, labels, annotations but the cost, ownerReferences, finalizers, generateName: each its own
    validation, whose message says what the operator may change."""
    policy, _ = policy_of(render(helm, tmp_path, {}))
    spec = policy["spec"]
    variables = {v["name"]: v["expression"] for v in spec["variables"]}
    assert variables["cost"] == f"'{COST}'"
    expressions = " ".join(v["expression"] for v in spec["validations"])
    assert "object.spec == oldObject.spec" in expressions
    for field in ("labels", "ownerReferences", "finalizers", "generateName"):
        assert f"object.metadata.{field}" in expressions and f"oldObject.metadata.{field}" in expressions
    assert "variables.otherAnnotations" in expressions
    for validation in spec["validations"]:
        message = validation.get("message") or validation["messageExpression"]
        assert f"may change only the {COST} annotation of a pod" in message, validation


@pytest.mark.parametrize(
    ("values", "account"),
    [
        ({}, FULLNAME),
        ({"serviceAccount": {"create": True, "name": "scaler"}}, "scaler"),
        ({"serviceAccount": {"create": False, "name": "existing"}}, "existing"),
        ({"fullnameOverride": "autoscaler"}, "autoscaler"),
        ({"watchNamespaces": ["shop"]}, FULLNAME),
    ],
    ids=["default", "named", "existing", "fullname-override", "served-namespaces"],
)
def test_the_policy_applies_to_the_operators_service_account_only(
    helm: Helm, tmp_path: Path, values: dict[str, Any], account: str
) -> None:
    docs = render(helm, tmp_path, values)
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == account
    policy, _ = policy_of(docs)
    # The release namespace: where the ServiceAccount is, not a served namespace.
    assert username_of(policy) == f"system:serviceaccount:{NAMESPACE}:{account}"


def test_the_binding_is_cluster_wide_with_served_namespaces_too(helm: Helm, tmp_path: Path) -> None:
    # The matchCondition already limits it to the operator; a pod grant its ServiceAccount gets outside the
    # chart (another namespace) stays limited too.
    _, binding = policy_of(render(helm, tmp_path, {"watchNamespaces": ["shop"]}))
    assert "matchResources" not in binding["spec"]


def test_turning_the_policy_off_removes_it_and_keeps_the_rule(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"podDeletionCostPolicy": {"enabled": False}})
    assert of_kind(docs, "ValidatingAdmissionPolicy") == []
    assert of_kind(docs, "ValidatingAdmissionPolicyBinding") == []
    assert grants(one(docs, "ClusterRole"))[PODS] == {"list", "watch", "patch"}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"podDeletionCostPolicy": {"enabled": "yes"}}, "/podDeletionCostPolicy/enabled"),
        ({"podDeletionCostPolicy": {"enabled": 1}}, "/podDeletionCostPolicy/enabled"),
        ({"podDeletionCostPolicy": {"enabled": True, "enable": False}}, "'enable'"),
        ({"podDeletionCostPolicy": True}, "/podDeletionCostPolicy"),
    ],
    ids=["string", "number", "misspelt-key", "not-an-object"],
)
def test_the_schema_refuses_a_bad_value(
    helm: Helm, tmp_path: Path, values: dict[str, Any], named: str
) -> None:
    assert_refused(helm, tmp_path, values, named)
