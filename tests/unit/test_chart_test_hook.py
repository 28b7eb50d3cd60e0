"""The chart's `helm test` pod: what it runs, under which account, and that no selector of the release's
takes it for an operator pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.unit.helm_chart import FULLNAME, NAMESPACE, VALUES_SETS, Helm, helm, of_kind, one, render

__all__ = ["helm"]


def _hook(docs: list[dict[str, Any]]) -> dict[str, Any]:
    pods = of_kind(docs, "Pod")
    assert len(pods) == 1, pods
    return pods[0]


def test_the_hook_checks_the_metrics_service_and_a_served_namespace(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {})
    pod = _hook(docs)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    spec, operator = pod["spec"], one(docs, "Deployment")["spec"]["template"]["spec"]
    service = one(docs, "Service")
    url = (
        f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}/metrics"
    )
    assert spec["containers"][0]["args"] == ["check", "--metrics-url", url, "--namespace", NAMESPACE]
    assert spec["serviceAccountName"] == FULLNAME == operator["serviceAccountName"]
    assert spec["containers"][0]["image"] == operator["containers"][0]["image"]
    assert spec["restartPolicy"] == "Never"


def test_with_watched_namespaces_it_reads_policies_in_the_first(helm: Helm, tmp_path: Path) -> None:
    pod = _hook(render(helm, tmp_path, VALUES_SETS["watch-namespaces"]))
    assert pod["spec"]["containers"][0]["args"][-2:] == ["--namespace", "shop"]


def test_no_selector_of_the_release_matches_the_hook_pod(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, VALUES_SETS["replicas-2"])
    labels = _hook(docs)["metadata"]["labels"]
    selectors = [
        one(docs, "Service")["spec"]["selector"],
        one(docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        one(docs, "Deployment")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert not all(labels.get(k) == v for k, v in selector.items()), (selector, labels)
