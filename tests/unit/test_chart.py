"""The Helm chart, checked with the real helm binary: lint, what each values set renders, the RBAC against
an explicit table, the values schema rejecting bad values by name, and the CRD copy matching the repo's.

helm comes from $SCALEKEEPER_HELM, the project's cache (`hack/build-go.sh tools`), or PATH. Without it the
tests fail (not skip): the chart is part of what the suite vouches for.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "manifests" / "chart" / "scalekeeper"
REPO_CRD = ROOT / "crds" / "scalingpolicies.scalekeeper.dev.yaml"
CHART_CRD = CHART / "crds" / REPO_CRD.name
RELEASE, NAMESPACE = "sk", "sk-system"
FULLNAME = "sk-scalekeeper"
# Cluster-scoped kinds the chart renders besides the ClusterRole and its binding.
CLUSTER_SCOPED = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
RESYNC = f"cp {REPO_CRD.relative_to(ROOT)} {CHART_CRD.parent.relative_to(ROOT)}/"

# ---------------------------------------------------------------- the expected RBAC, one row per grant
# (apiGroup, resource, resourceNames) -> verbs. Derived from the calls in operator/scalekeeper (see the
# chart README's RBAC table). Changing the chart's rules without changing this table fails the test.
NAMESPACED_RULES: dict[tuple[str, str, tuple[str, ...]], set[str]] = {
    # kopf: list + watch the policies, patch its finalizer in/out (handlers.py)
    ("scalekeeper.dev", "scalingpolicies", ()): {"list", "watch", "patch"},
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
# kube/leader.py LeaseElector: read, replace; create the first time (create cannot be limited by name).
LEASE_RULES: dict[tuple[str, str, tuple[str, ...]], set[str]] = {
    ("coordination.k8s.io", "leases", ("scalekeeper-leader",)): {"get", "update"},
    ("coordination.k8s.io", "leases", ()): {"create"},
}

VALUES_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "watch-namespaces": {"watchNamespaces": ["shop", "billing"]},
    "watch-namespace-patterns": {"watchNamespacePatterns": ["team-*", "shop"]},
    "replicas-2": {"replicas": 2},
    "bearer-token": {"prometheus": {"bearerTokenSecret": {"name": "prom-token", "key": "tok"}}},
    "everything": {
        "replicas": 3,
        "watchNamespaces": ["shop"],
        "prometheus": {
            "url": "https://prometheus.example:9091/prefix",
            "bearerTokenSecret": {"name": "prom-token", "key": "tok"},
            "tls": {"caSecret": {"name": "prom-ca", "key": "bundle.pem"}, "insecureSkipVerify": False},
        },
        "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}},
        "extraScaleTargets": [{"apiGroup": "postgresql.cnpg.io", "resource": "clusters"}],
        "extraPatchTargets": [{"apiGroup": "acid.zalan.do", "resource": "postgresqls"}],
        "leaderElection": {"enabled": True, "leaseName": "other-lease", "leaseSeconds": 30},
        "logLevel": "DEBUG",
        "logDecisions": "all",
        "image": {"repository": "localhost:5001/scalekeeper", "tag": "dev", "pullPolicy": "Always"},
    },
    # What the schema bounds (quantities, tolerations, priority class, PDB) still lets through.
    "placement": {
        "replicas": 2,
        "podDisruptionBudget": {"minAvailable": "50%"},
        # Strings: the client's typed models (test_rendered_objects_are_valid_api_objects) refuse the bare
        # numbers (cpu: 0.5) that the API server and the schema accept.
        "resources": {
            "requests": {"cpu": "500m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "1.5Gi"},
        },
        "tmpSizeLimit": "100M",
        "priorityClassName": "ops.critical-operators",
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"},
            {"operator": "Exists", "effect": ""},
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 30,
            },
        ],
    },
}

# values -> what the error must name. Schema errors name the value's path; template checks name the value.
INVALID_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "replicas-negative": ({"replicas": -1}, "/replicas"),
    "pull-policy": ({"image": {"pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
    "prometheus-url-number": ({"prometheus": {"url": 5}}, "/prometheus/url"),
    "prometheus-url-no-scheme": ({"prometheus": {"url": "prometheus:9090"}}, "/prometheus/url"),
    "watch-namespaces-string": ({"watchNamespaces": "default"}, "/watchNamespaces"),
    "watch-namespaces-pattern": ({"watchNamespaces": ["team-*"]}, "/watchNamespaces/0"),
    "watch-namespace-patterns-string": ({"watchNamespacePatterns": "team-*"}, "/watchNamespacePatterns"),
    "watch-namespaces-and-patterns": (
        {"watchNamespaces": ["shop"], "watchNamespacePatterns": ["team-*"]},
        "watchNamespacePatterns",
    ),
    "log-level": ({"logLevel": "LOUD"}, "/logLevel"),
    "log-format": ({"logFormat": "xml"}, "/logFormat"),
    "log-decisions": ({"logDecisions": "some"}, "/logDecisions"),
    "unknown-key": ({"replica": 2}, "'replica'"),
    "port-out-of-range": ({"metrics": {"port": 70000}}, "/metrics/port"),
    "extra-target-no-resource": ({"extraScaleTargets": [{"apiGroup": "x.io"}]}, "/extraScaleTargets/0"),
    "replicas-without-election": (
        {"replicas": 2, "leaderElection": {"enabled": False}},
        "leaderElection.enabled",
    ),
    "service-account-unnamed": ({"serviceAccount": {"create": False}}, "serviceAccount.name"),
    "ca-and-insecure": (
        {"prometheus": {"tls": {"caSecret": {"name": "ca"}, "insecureSkipVerify": True}}},
        "insecureSkipVerify",
    ),
    "memory-not-a-quantity": ({"resources": {"limits": {"memory": "256MB"}}}, "/resources/limits/memory"),
    "cpu-not-a-quantity": ({"resources": {"requests": {"cpu": "half"}}}, "/resources/requests/cpu"),
    "cpu-negative": ({"resources": {"requests": {"cpu": -1}}}, "/resources/requests/cpu"),
    "resources-misspelt": ({"resources": {"request": {"cpu": "1"}}}, "'request'"),
    "tmp-size-not-a-quantity": ({"tmpSizeLimit": "64 MB"}, "/tmpSizeLimit"),
    "priority-class-not-a-name": ({"priorityClassName": "High_Priority"}, "/priorityClassName"),
    "toleration-effect": ({"tolerations": [{"key": "k", "effect": "NoSchedul"}]}, "/tolerations/0/effect"),
    "toleration-operator": ({"tolerations": [{"key": "k", "operator": "In"}]}, "/tolerations/0/operator"),
    "toleration-field": ({"tolerations": [{"key": "k", "efect": "NoSchedule"}]}, "/tolerations/0"),
    "pdb-negative": ({"podDisruptionBudget": {"minAvailable": -1}}, "/podDisruptionBudget/minAvailable"),
    "pdb-over-100-percent": (
        {"podDisruptionBudget": {"minAvailable": "150%"}},
        "/podDisruptionBudget/minAvailable",
    ),
    "pdb-word": ({"podDisruptionBudget": {"minAvailable": "half"}}, "/podDisruptionBudget/minAvailable"),
}


# ---------------------------------------------------------------- helm


def _versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / "hack" / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _find_helm() -> str | None:
    if os.environ.get("SCALEKEEPER_HELM"):
        return os.environ["SCALEKEEPER_HELM"]
    xdg = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    cache = Path(os.environ.get("SCALEKEEPER_CACHE") or xdg / "scalekeeper") / "bin"
    pinned = cache / f"helm-{_versions().get('HELM_VERSION', '')}"
    candidates = [pinned, cache / "current" / "helm"]
    on_path = shutil.which("helm")
    if on_path:
        candidates.append(Path(on_path))
    candidates += sorted(cache.glob("helm-*"), reverse=True)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    return None


@dataclass(frozen=True)
class Helm:
    binary: str
    env: dict[str, str]

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args], capture_output=True, text=True, timeout=120, check=False, env=self.env
        )


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    found = _find_helm()
    if found is None:
        pytest.fail(
            "helm not found: looked at $SCALEKEEPER_HELM, ~/.cache/scalekeeper/bin/helm-<HELM_VERSION> and "
            "PATH. Build it with `hack/build-go.sh tools` (make cluster-up does) or install helm v3.",
            pytrace=False,
        )
    home = tmp_path_factory.mktemp("helm-home")
    # Keep helm away from the user's repositories, plugins and caches.
    env = dict(os.environ)
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        env[var] = str(home / var.lower())
    return Helm(found, env)


def _values_file(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def _kube_version() -> str:
    """The Kubernetes the chart is rendered for: the cluster's, not the one helm was built against (a helm
    built from its module without the version stamps assumes v1.20, below the chart's kubeVersion)."""
    return _versions()["K8S_VERSION"]


def template(
    helm: Helm, tmp_path: Path, values: dict[str, Any], kube_version: str = ""
) -> subprocess.CompletedProcess[str]:
    return helm.run(
        "template",
        RELEASE,
        str(CHART),
        "-n",
        NAMESPACE,
        "--kube-version",
        kube_version or _kube_version(),
        "-f",
        _values_file(tmp_path, values),
    )


def render(helm: Helm, tmp_path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    result = template(helm, tmp_path, values)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def grants(role: dict[str, Any]) -> dict[tuple[str, str, tuple[str, ...]], set[str]]:
    """A Role's rules as {(apiGroup, resource, resourceNames): verbs}; every rule must be plain."""
    out: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for rule in role["rules"]:
        assert "nonResourceURLs" not in rule, rule
        names = tuple(sorted(rule.get("resourceNames") or ()))
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource, names)
                assert key not in out, f"{key} granted by two rules of {role['metadata']['name']}"
                out[key] = set(rule["verbs"])
    return out


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    c: dict[str, Any] = pod["containers"][0]
    return c


def env_of(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(docs)["env"]}


# ---------------------------------------------------------------- lint


def test_helm_lint_is_clean(helm: Helm, tmp_path: Path) -> None:
    result = helm.run("lint", str(CHART), "--strict", "-n", NAMESPACE, "--kube-version", _kube_version())
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


@pytest.mark.parametrize("name", sorted(VALUES_SETS))
def test_helm_lint_with_values(helm: Helm, tmp_path: Path, name: str) -> None:
    values = _values_file(tmp_path, VALUES_SETS[name])
    result = helm.run(
        "lint", str(CHART), "--strict", "-n", NAMESPACE, "--kube-version", _kube_version(), "-f", values
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_chart_metadata_matches_the_package() -> None:
    import tomllib

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "scalekeeper"
    assert chart["version"] == "0.1.0"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert str(chart["appVersion"]) == project["version"], "Chart.yaml appVersion != pyproject version"
    assert chart["kubeVersion"] == ">=1.30.0-0"
    assert chart["home"] == project["urls"]["Homepage"]
    assert chart["sources"] == [project["urls"]["Source"]]
    assert chart["maintainers"] and all(m["name"] for m in chart["maintainers"])
    # The icon is a file of the repository, at its raw URL on the project's home.
    raw = (
        project["urls"]["Source"].replace("https://github.com/", "https://raw.githubusercontent.com/")
        + "/main/"
    )
    assert chart["icon"].startswith(raw), chart["icon"]
    assert (ROOT / chart["icon"].removeprefix(raw)).is_file(), chart["icon"]


def test_artifact_hub_annotations_match_what_they_describe() -> None:
    import tomllib

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    notes = chart["annotations"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert notes["artifacthub.io/license"] == project["license"]
    assert notes["artifacthub.io/operator"] == "true"
    links = {link["name"]: link["url"] for link in yaml.safe_load(notes["artifacthub.io/links"])}
    assert links == {"source": project["urls"]["Source"], "issues": project["urls"]["Issues"]}
    crd = yaml.safe_load(CHART_CRD.read_text())
    (listed,) = yaml.safe_load(notes["artifacthub.io/crds"])
    assert listed["kind"] == crd["spec"]["names"]["kind"]
    assert listed["name"] == crd["metadata"]["name"]
    assert listed["version"] in [v["name"] for v in crd["spec"]["versions"]]
    assert listed["description"]
    # The images the chart installs: values.yaml's repositories at the chart's appVersion.
    images = {i["name"]: i["image"] for i in yaml.safe_load(notes["artifacthub.io/images"])}
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    repositories = [values["image"]["repository"], values["celeryExporter"]["image"]["repository"]]
    assert images == {r.rsplit("/", 1)[1]: f"{r}:{chart['appVersion']}" for r in repositories}


def test_the_chart_refuses_a_kubernetes_older_than_its_kube_version(helm: Helm, tmp_path: Path) -> None:
    result = template(helm, tmp_path, {}, kube_version="v1.29.9")
    assert result.returncode != 0 and "kubeVersion" in result.stderr, result.stderr
    assert template(helm, tmp_path, {}, kube_version="v1.30.0-eks-1").returncode == 0


# ---------------------------------------------------------------- what each values set renders


@pytest.mark.parametrize("name", sorted(VALUES_SETS))
def test_every_values_set_renders_the_operator(helm: Helm, tmp_path: Path, name: str) -> None:
    docs = render(helm, tmp_path, VALUES_SETS[name])
    kinds = {d["kind"] for d in docs}
    assert {"Deployment", "ServiceAccount", "Service", "Role", "RoleBinding"} <= kinds
    for d in docs:
        assert d["metadata"]["name"].startswith(RELEASE), d["metadata"]["name"]
        if d["kind"] not in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", *CLUSTER_SCOPED):
            assert d["metadata"]["namespace"] == NAMESPACE, d["metadata"]
    sa = one(docs, "ServiceAccount")["metadata"]["name"]
    assert one(docs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == sa
    # Every binding binds the operator's ServiceAccount and nothing else, to a role the chart renders.
    roles = {(r["kind"], r["metadata"].get("namespace"), r["metadata"]["name"]) for r in docs}
    for b in of_kind(docs, "RoleBinding") + of_kind(docs, "ClusterRoleBinding"):
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
        ns = b["metadata"].get("namespace") if b["roleRef"]["kind"] == "Role" else None
        assert (b["roleRef"]["kind"], ns, b["roleRef"]["name"]) in roles, b["roleRef"]


def _differences(original: Any, back: Any, path: str = "") -> Iterator[str]:
    if isinstance(original, dict) and isinstance(back, dict):
        for key in original.keys() | back.keys():
            if key not in back:
                yield f"{path}.{key}: not a field of the API (dropped)"
            elif key not in original:
                yield f"{path}.{key}: added"
            else:
                yield from _differences(original[key], back[key], f"{path}.{key}")
    elif isinstance(original, list) and isinstance(back, list) and len(original) == len(back):
        for i, (a, b) in enumerate(zip(original, back, strict=True)):
            yield from _differences(a, b, f"{path}[{i}]")
    elif original != back:
        yield f"{path}: {original!r} became {back!r}"


@pytest.mark.parametrize("name", sorted(VALUES_SETS))
def test_rendered_objects_are_valid_api_objects(helm: Helm, tmp_path: Path, name: str) -> None:
    """Each object round-trips through the kubernetes client's typed models without losing a field:
    a misspelled field, a wrong type or a missing required field fails here, without a cluster."""
    import json

    from kubernetes import client

    api = client.ApiClient()
    for doc in render(helm, tmp_path, VALUES_SETS[name]):
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # a CRD's kind: no typed model
        assert doc["apiVersion"].endswith("/v1") or doc["apiVersion"] == "v1", doc["apiVersion"]
        model = api.deserialize(json.dumps(doc), f"V1{doc['kind']}", "application/json")
        problems = list(_differences(doc, api.sanitize_for_serialization(model)))
        assert not problems, f"{doc['kind']} {doc['metadata']['name']}: {problems}"


def test_default_rbac_is_one_clusterrole_with_exactly_the_table(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {})
    assert grants(one(docs, "ClusterRole")) == NAMESPACED_RULES
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one(docs, "ClusterRole")["metadata"]["name"]
    # Cluster-scoped names carry the namespace: two releases of one name must not collide.
    assert NAMESPACE in binding["metadata"]["name"]
    roles = of_kind(docs, "Role")
    assert [r["metadata"]["name"] for r in roles] == [f"{FULLNAME}-leader-election"]
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
    lease = [r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-leader-election")]
    assert len(lease) == 1 and lease[0]["metadata"]["namespace"] == NAMESPACE
    assert env_of(docs)["SCALEKEEPER_NAMESPACES"] == "shop,billing"


def test_watch_namespace_patterns_keep_cluster_rbac_and_reach_the_operator(
    helm: Helm, tmp_path: Path
) -> None:
    docs = render(helm, tmp_path, VALUES_SETS["watch-namespace-patterns"])
    # Patterns cannot be RBAC subjects: the grants stay cluster-wide, the operator filters, and kopf needs to
    # watch namespaces (and CRDs) to find the matching ones.
    assert grants(one(docs, "ClusterRole")) == {
        **NAMESPACED_RULES,
        ("", "namespaces", ()): {"list", "watch"},
        ("apiextensions.k8s.io", "customresourcedefinitions", ()): {"list", "watch"},
    }
    assert env_of(docs)["SCALEKEEPER_NAMESPACES"] == "team-*,shop"


def test_extra_targets_add_exactly_their_grants(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, VALUES_SETS["everything"])
    role = next(r for r in of_kind(docs, "Role") if r["metadata"]["name"] == FULLNAME)
    assert grants(role) == {
        **NAMESPACED_RULES,
        ("postgresql.cnpg.io", "clusters/scale", ()): {"get", "patch"},
        ("acid.zalan.do", "postgresqls", ()): {"get", "patch"},
    }
    lease = next(r for r in of_kind(docs, "Role") if r["metadata"]["name"].endswith("-leader-election"))
    assert grants(lease) == {
        ("coordination.k8s.io", "leases", ("other-lease",)): {"get", "update"},
        ("coordination.k8s.io", "leases", ()): {"create"},
    }
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
    docs = render(helm, tmp_path, {"leaderElection": {"enabled": False}})
    assert [r["metadata"]["name"] for r in of_kind(docs, "Role")] == []
    assert env_of(docs)["SCALEKEEPER_LEADER_ELECTION"] == "false"


@pytest.mark.parametrize("name", sorted(VALUES_SETS))
def test_no_rule_reaches_secrets_or_wildcards(helm: Helm, tmp_path: Path, name: str) -> None:
    docs = render(helm, tmp_path, VALUES_SETS[name])
    for role in of_kind(docs, "Role") + of_kind(docs, "ClusterRole"):
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"], rule
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], rule
            assert not {"escalate", "bind", "impersonate", "delete", "deletecollection"} & set(rule["verbs"])


def test_pdb_only_with_more_than_one_replica(helm: Helm, tmp_path: Path) -> None:
    assert of_kind(render(helm, tmp_path, {}), "PodDisruptionBudget") == []
    docs = render(helm, tmp_path, VALUES_SETS["replicas-2"])
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_pod_is_locked_down(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {})
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    sc = container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["runAsUser"] == 10001  # the Dockerfile's USER
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    assert "USER 10001" in (ROOT / "Dockerfile").read_text()


def test_probes_ports_and_resources(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {})
    c = container(docs)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    env = env_of(docs)
    assert env["SCALEKEEPER_METRICS_PORT"] == "8080" and env["SCALEKEEPER_HEALTH_PORT"] == "8081"
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    assert c["image"] == "ghcr.io/scalekeeper/scalekeeper:0.1.0"  # tag defaults to appVersion
    assert c["args"] == ["run"]


def test_downward_api_identity_and_lease_namespace(helm: Helm, tmp_path: Path) -> None:
    env = env_of(render(helm, tmp_path, {}))
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["SCALEKEEPER_LEASE_NAMESPACE"] == NAMESPACE


def test_env_names_are_exactly_the_operators_settings(helm: Helm, tmp_path: Path) -> None:
    """Every variable config.py reads is settable from the chart, and the chart sets nothing else."""
    source = (ROOT / "operator" / "scalekeeper" / "config.py").read_text()
    # Allocation tracing is diagnostics, slow, not for production: the chart does not offer it.
    read = set(re.findall(r'"((?:SCALEKEEPER|POD)_[A-Z_]+)"', source)) - {"SCALEKEEPER_TRACEMALLOC"}
    assert "SCALEKEEPER_PROMETHEUS_URL" in read and "POD_NAME" in read
    env = env_of(render(helm, tmp_path, VALUES_SETS["everything"]))
    assert set(env) == read


def test_bearer_token_and_ca_are_mounted_files(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, VALUES_SETS["everything"])
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container(docs)["volumeMounts"]}
    env = env_of(docs)
    for env_name, secret, key in (
        ("SCALEKEEPER_PROMETHEUS_BEARER_TOKEN_FILE", "prom-token", "tok"),
        ("SCALEKEEPER_PROMETHEUS_CA_FILE", "prom-ca", "bundle.pem"),
    ):
        (name,) = [n for n, v in volumes.items() if v.get("secret", {}).get("secretName") == secret]
        assert mounts[name]["readOnly"] is True
        (item,) = volumes[name]["secret"]["items"]
        assert item["key"] == key
        assert env[env_name] == f"{mounts[name]['mountPath']}/{item['path']}"
    assert env["SCALEKEEPER_PROMETHEUS_URL"] == "https://prometheus.example:9091/prefix"
    # Without the secrets: no volume, no variable.
    plain = render(helm, tmp_path, {})
    assert [v["name"] for v in one(plain, "Deployment")["spec"]["template"]["spec"]["volumes"]] == ["tmp"]
    assert "SCALEKEEPER_PROMETHEUS_BEARER_TOKEN_FILE" not in env_of(plain)
    token_only = env_of(render(helm, tmp_path, VALUES_SETS["bearer-token"]))
    assert token_only["SCALEKEEPER_PROMETHEUS_BEARER_TOKEN_FILE"].endswith("/token")
    assert "SCALEKEEPER_PROMETHEUS_CA_FILE" not in token_only


def test_service_monitor_is_optional(helm: Helm, tmp_path: Path) -> None:
    assert of_kind(render(helm, tmp_path, {}), "ServiceMonitor") == []
    docs = render(helm, tmp_path, VALUES_SETS["everything"])
    sm = one(docs, "ServiceMonitor")
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    service_labels = one(docs, "Service")["metadata"]["labels"]
    assert sm["spec"]["selector"]["matchLabels"].items() <= service_labels.items()


# ---------------------------------------------------------------- invalid values


@pytest.mark.parametrize("name", sorted(INVALID_VALUES))
def test_invalid_values_fail_naming_the_value(helm: Helm, tmp_path: Path, name: str) -> None:
    # `helm template` runs the same values-schema validation as `helm install` (which needs a cluster).
    assert_refused(helm, tmp_path, *INVALID_VALUES[name])


def assert_refused(helm: Helm, tmp_path: Path, values: dict[str, Any], named: str) -> None:
    """`helm template` refuses the values, and its error names `named`."""
    result = template(helm, tmp_path, values)
    assert result.returncode != 0, f"{values} rendered:\n{result.stdout[:500]}"
    assert named in result.stderr, result.stderr


def test_bare_number_quantities_pass_the_schema(helm: Helm, tmp_path: Path) -> None:
    # The API server reads `cpu: 0.5` and `cpu: 1` as quantities: the schema must not refuse them.
    result = template(helm, tmp_path, {"resources": {"requests": {"cpu": 0.5}, "limits": {"cpu": 1}}})
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------- CRD copy, documentation


def test_chart_crd_is_the_repo_crd() -> None:
    assert sorted(p.name for p in CHART_CRD.parent.iterdir()) == [REPO_CRD.name]
    assert CHART_CRD.read_bytes() == REPO_CRD.read_bytes(), (
        f"{CHART_CRD.relative_to(ROOT)} differs from {REPO_CRD.relative_to(ROOT)}; re-sync: {RESYNC}"
    )


def _schema_leaves(values: dict[str, Any], schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Paths of values.yaml's values, descending only into objects the schema spells out."""
    for key, value in values.items():
        path = f"{prefix}{key}"
        sub = schema.get("properties", {}).get(key, {})
        if isinstance(value, dict) and "properties" in sub:
            yield from _schema_leaves(value, sub, path + ".")
        else:
            yield path


def test_every_value_is_commented_and_documented() -> None:
    import json

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    leaves = set(_schema_leaves(values, schema))
    readme = (CHART / "README.md").read_text()
    undocumented = sorted(p for p in leaves if f"`{p}`" not in readme)
    assert not undocumented, f"values missing from the README table: {undocumented}"
    # A comment line directly above every value's key in values.yaml.
    stack: list[tuple[int, str]] = []
    previous = ""
    uncommented = []
    for line in (CHART / "values.yaml").read_text().splitlines():
        m = re.match(r"^( *)([A-Za-z][\w]*):", line)
        if m:
            indent = len(m.group(1))
            while stack and stack[-1][0] >= indent:
                stack.pop()
            path = ".".join([p for _, p in stack] + [m.group(2)])
            stack.append((indent, m.group(2)))
            if path in leaves and not previous.lstrip().startswith("#"):
                uncommented.append(path)
        if line.strip():
            previous = line
    assert not uncommented, f"values without a comment in values.yaml: {uncommented}"
