"""The chart's RBAC, checked against an explicit table of grants and against the READMEs' RBAC tables, for
each way of scoping the operator (cluster-wide, listed namespaces, namespace patterns, extra targets)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.helm_chart import (
    CHART,
    FULLNAME,
    NAMESPACE,
    ROOT,
    VALUES_SETS,
    Helm,
    env_of,
    grants,
    helm,
    of_kind,
    one,
    render,
)

__all__ = ["helm"]

# ---------------------------------------------------------------- the expected RBAC, one row per grant
# (apiGroup, resource, resourceNames) -> verbs. Derived from the calls in operator/scalekeeper (see the
# chart README's RBAC table). Changing the chart's rules without changing this table fails the test.
NAMESPACED_RULES: dict[tuple[str, str, tuple[str, ...]], set[str]] = {
    # kopf: list + watch the policies, patch its finalizer in/out (handlers.py)
    ("scalekeeper.dev", "scalingpolicies", ()): {"get", "list", "watch", "patch"},
    # Runtime.cycle write_status, kopf's status patches
    ("scalekeeper.dev", "scalingpolicies/status", ()): {"patch"},
    # kube/workers.py WorkerDeployments.ensure: read, create, patch the template; kopf's watch (handlers.py
    # the informers of kube/watched.py WatchedObjects)
    ("apps", "deployments", ()): {"get", "list", "watch", "create", "patch"},
    ("apps", "statefulsets", ()): {"list", "watch"},
    # kube/targets.py ReplicaClient.read/write through /scale
    ("apps", "deployments/scale", ()): {"get", "patch"},
    ("apps", "statefulsets/scale", ()): {"get", "patch"},
    # kube/hpa.py HpaClient: list (observe), create, replace (apply); the informer of kube/watched.py
    ("autoscaling", "horizontalpodautoscalers", ()): {"list", "watch", "create", "update"},
    # kube/events.py EventRecorder.post
    ("", "events", ()): {"create"},
    # kube/pods.py: the worker pods' watch, the pod-deletion-cost patch (test_chart_pod_policy.py)
    ("", "pods", ()): {"list", "watch", "patch"},
}
# kube/lease.py OwnLease and kube/membership.py Membership: a member Lease per replica (named after its pod,
# so no rule can name it): create, read, replace, list the group's, delete its own and dead members'.
LEASE_RULES: dict[tuple[str, str, tuple[str, ...]], set[str]] = {
    ("coordination.k8s.io", "leases", ()): {"get", "list", "watch", "create", "update", "delete"},
}


def test_default_rbac_is_one_clusterrole_with_exactly_the_table(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {})
    assert grants(one(docs, "ClusterRole")) == NAMESPACED_RULES
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(docs, "ClusterRole")["metadata"]["name"]
    # Cluster-scoped names carry the namespace: two releases of one name must not collide.
    assert NAMESPACE in binding["metadata"]["name"]
    roles = of_kind(docs, "Role")
    assert [r["metadata"]["name"] for r in roles] == [f"{FULLNAME}-membership"]
    assert roles[0]["metadata"]["namespace"] == NAMESPACE
    assert grants(roles[0]) == LEASE_RULES
    assert env_of(docs)["SCALEKEEPER_NAMESPACES"] == ""


def test_watch_namespaces_gives_a_role_per_namespace_and_nothing_cluster_wide(
    helm: Helm, tmp_path: Path
) -> None:
    docs = render(helm, tmp_path, VALUES_SETS["watch-namespaces"])
    assert of_kind(docs, "ClusterRole") == [] and of_kind(docs, "ClusterRoleBinding") == []
    served = {
        r["metadata"]["namespace"]: r for r in of_kind(docs, "Role") if r["metadata"]["name"] == FULLNAME
    }
    assert set(served) == {"shop", "billing"}
    for role in served.values():
        assert grants(role) == NAMESPACED_RULES
    bound = {
        b["metadata"]["namespace"] for b in of_kind(docs, "RoleBinding") if b["roleRef"]["name"] == FULLNAME
    }
    assert bound == {"shop", "billing"}
    lease = [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-membership")]
    assert len(lease) == 1 and lease[0]["metadata"]["namespace"] == NAMESPACE
    assert env_of(docs)["SCALEKEEPER_NAMESPACES"] == "shop,billing"


def test_watch_namespace_patterns_keep_cluster_rbac_and_reach_the_operator(
    helm: Helm, tmp_path: Path
) -> None:
    docs = render(helm, tmp_path, VALUES_SETS["watch-namespace-patterns"])
    # Patterns cannot be RBAC subjects: the grants stay cluster-wide and the operator's informers filter
    # by namespace (nothing watches namespaces themselves).
    assert grants(one(docs, "ClusterRole")) == NAMESPACED_RULES
    assert env_of(docs)["SCALEKEEPER_NAMESPACES"] == "team-*,shop"


def test_extra_targets_add_exactly_their_grants(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, VALUES_SETS["everything"])
    role = next(r for r in of_kind(docs, "Role") if r["metadata"]["name"] == FULLNAME)
    assert grants(role) == {
        **NAMESPACED_RULES,
        ("postgresql.cnpg.io", "clusters/scale", ()): {"get", "patch"},
        ("acid.zalan.do", "postgresqls", ()): {"get", "patch"},
    }
    lease = next(r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-membership"))
    assert grants(lease) == LEASE_RULES
    assert env_of(docs)["SCALEKEEPER_LEASE_NAME"] == "other-lease"


def readme_rbac(readme: Path, heading: str) -> dict[str, set[str]]:
    """The RBAC table under `heading` in a README as {resource or value name: verbs}. A row names its
    resources in backticks (`deployments/scale`); an API group in parentheses is not one. A row about the
    extraScaleTargets/extraPatchTargets values is keyed by the value's name."""
    section = readme.read_text().split(f"\n{heading}\n", 1)[1]
    lines = section[section.index("\n|") + 1 :].splitlines()
    table: dict[str, set[str]] = {}
    for line in lines[2:]:  # past the header and the |---| line
        if not line.startswith("|"):
            break
        what, verbs = [cell.strip() for cell in line.strip("|").split("|")][:2]
        names = re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", what))
        keys = [n for n in names if re.fullmatch(r"[a-z]+(/[a-z]+)?|extra(Scale|Patch)Targets", n)]
        assert keys, f"{readme.name}: an RBAC row naming no resource: {line}"
        for key in keys:
            table.setdefault(key, set()).update(v.strip() for v in verbs.split(","))
    return table


@pytest.mark.parametrize(
    ("readme", "heading"),
    [(ROOT / "README.md", "## Installing with Helm"), (CHART / "README.md", "## RBAC")],
    ids=["README", "chart-README"],
)
def test_the_readme_rbac_tables_are_the_rendered_rules(
    helm: Helm, tmp_path: Path, readme: Path, heading: str
) -> None:
    """Each resource's verbs in the README are the rendered chart's, across the defaults (ClusterRole and
    the Lease Role), namespace patterns, and extra targets: a rule changed in the chart and not in the
    README (or the other way) fails here."""
    rendered: dict[str, set[str]] = {}
    roles = of_kind(render(helm, tmp_path, {}), "ClusterRole") + of_kind(render(helm, tmp_path, {}), "Role")
    roles += of_kind(render(helm, tmp_path, VALUES_SETS["watch-namespace-patterns"]), "ClusterRole")
    for role in roles:
        for (_, resource, _), verbs in grants(role).items():
            rendered.setdefault(resource, set()).update(verbs)
    everything = render(helm, tmp_path, VALUES_SETS["everything"])
    served = next(r for r in of_kind(everything, "Role") if r["metadata"]["name"] == FULLNAME)
    extra = {k: v for k, v in grants(served).items() if k not in NAMESPACED_RULES}
    scale = {v for (_, resource, _), verbs in extra.items() if resource.endswith("/scale") for v in verbs}
    patch = {v for (_, resource, _), verbs in extra.items() if not resource.endswith("/scale") for v in verbs}
    rendered.update({"extraScaleTargets": scale, "extraPatchTargets": patch})
    table = readme_rbac(readme, heading)
    differences = {
        r: {"README": sorted(table.get(r, ())), "chart": sorted(rendered.get(r, ()))}
        for r in table.keys() | rendered.keys()
        if table.get(r) != rendered.get(r)
    }
    assert not differences, f"{readme.relative_to(ROOT)} RBAC table vs templates/rbac.yaml: {differences}"


def test_no_lease_role_without_leader_election(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"sharding": {"enabled": False}})
    assert [r["metadata"]["name"] for r in of_kind(docs, "Role")] == []
    assert env_of(docs)["SCALEKEEPER_SHARDING"] == "false"


@pytest.mark.parametrize("name", sorted(VALUES_SETS))
def test_no_rule_reaches_secrets_or_wildcards(helm: Helm, tmp_path: Path, name: str) -> None:
    docs = render(helm, tmp_path, VALUES_SETS[name])
    for role in of_kind(docs, "Role") + of_kind(docs, "ClusterRole"):
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"], rule
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], rule
            assert not {"escalate", "bind", "impersonate", "deletecollection"} & set(rule["verbs"])
            # Deleting: only Leases, in the release namespace (a member's own, and dead members').
            assert "delete" not in rule["verbs"] or (
                rule["resources"] == ["leases"] and role["metadata"]["namespace"] == NAMESPACE
            ), rule
