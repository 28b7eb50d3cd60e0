"""The Helm chart as the chart tests see it: the helm binary (a session fixture), the chart rendered with
values, the rendered objects read back, and the values sets the tests render it with.

helm comes from $SCALEKEEPER_HELM, the project's cache (`hack/build-go.sh tools`), or PATH. Without it the
tests fail (not skip): the chart is part of what the suite vouches for.
"""

from __future__ import annotations

import os
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
RELEASE, NAMESPACE = "sk", "sk-system"
FULLNAME = "sk-scalekeeper"

# The values sets the chart is linted and rendered with, by name: what several test files check each against.
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
        "sharding": {"enabled": True, "leaseName": "other-lease", "leaseSeconds": 30},
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


def assert_refused(helm: Helm, tmp_path: Path, values: dict[str, Any], named: str) -> None:
    """`helm template` refuses the values, and its error names `named`."""
    result = template(helm, tmp_path, values)
    assert result.returncode != 0, f"{values} rendered:\n{result.stdout[:500]}"
    assert named in result.stderr, result.stderr
