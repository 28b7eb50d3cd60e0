"""The Helm chart, checked with the real helm binary: lint, what each values set renders, the pod's
settings, the values schema rejecting bad values by name, and the CRD copy matching the repo's. The RBAC is
checked in test_chart_rbac.py; helm is found as tests/unit/helm_chart.py says.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.helm_chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    ROOT,
    VALUES_SETS,
    Helm,
    _differences,
    _kube_version,
    _values_file,
    assert_refused,
    container,
    env_of,
    helm,
    of_kind,
    one,
    render,
    template,
)

__all__ = ["helm"]

REPO_CRD = ROOT / "crds" / "scalingpolicies.scalekeeper.dev.yaml"
CHART_CRD = CHART / "crds" / REPO_CRD.name
# Cluster-scoped kinds the chart renders besides the ClusterRole and its binding.
CLUSTER_SCOPED = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
RESYNC = f"cp {REPO_CRD.relative_to(ROOT)} {CHART_CRD.parent.relative_to(ROOT)}/"

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
        {"replicas": 2, "sharding": {"enabled": False}},
        "sharding.enabled",
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
    for probe in ("startupProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert "initialDelaySeconds" not in c["livenessProbe"]  # the startup probe holds it back
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
    # The operator's `namespace` (the policy's) is kept, as the kind cluster's annotation scrape keeps it.
    assert sm["spec"]["endpoints"][0]["honorLabels"] is True
    addon = yaml.safe_load_all((ROOT / "hack" / "addons" / "prometheus.yaml").read_text())
    config = next(d for d in addon if d and d["kind"] == "ConfigMap")["data"]["prometheus.yml"]
    jobs = {job["job_name"]: job for job in yaml.safe_load(config)["scrape_configs"]}
    assert jobs["pods"]["honor_labels"] is True
    values = {**VALUES_SETS["everything"], "serviceMonitor": {"enabled": True, "honorLabels": False}}
    assert (
        one(render(helm, tmp_path, values), "ServiceMonitor")["spec"]["endpoints"][0]["honorLabels"] is False
    )


# ---------------------------------------------------------------- invalid values


@pytest.mark.parametrize("name", sorted(INVALID_VALUES))
def test_invalid_values_fail_naming_the_value(helm: Helm, tmp_path: Path, name: str) -> None:
    # `helm template` runs the same values-schema validation as `helm install` (which needs a cluster).
    assert_refused(helm, tmp_path, *INVALID_VALUES[name])


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
