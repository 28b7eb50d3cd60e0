"""The chart's Grafana dashboard and alert rules: each rendered from its one source file, only when asked,
with the labels the sidecar and the ruleSelector need; every metric their queries name is one the operator
exports. The queries run against the real Prometheus in tests/cluster/test_bottleneck.py, the rules under
promtool in `make rules-check`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from scalekeeper.opmetrics import OperatorMetrics
from tests.unit.helm_chart import CHART, NAMESPACE, ROOT, Helm, assert_refused, helm, of_kind, one, render

__all__ = ["helm"]

DASHBOARD = CHART / "dashboards" / "scalekeeper.json"
RULES = CHART / "rules" / "scalekeeper-rules.yaml"


def test_neither_is_rendered_by_default(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {})
    assert of_kind(docs, "PrometheusRule") == []
    assert not [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]


def test_the_dashboard_configmap_holds_the_json_file_with_its_label(helm: Helm, tmp_path: Path) -> None:
    (default,) = of_kind(render(helm, tmp_path, {"dashboard": {"enabled": True}}), "ConfigMap")
    assert default["metadata"]["namespace"] == NAMESPACE
    assert default["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(default["data"]["scalekeeper.json"]) == json.loads(DASHBOARD.read_text())
    values = {
        "dashboard": {
            "enabled": True,
            "label": "example.com/dashboard",
            "labelValue": "yes",
            "namespace": "grafana",
            "annotations": {"grafana_folder": "Operators"},
        }
    }
    (moved,) = of_kind(render(helm, tmp_path, values), "ConfigMap")
    assert moved["metadata"]["namespace"] == "grafana"
    assert moved["metadata"]["labels"]["example.com/dashboard"] == "yes"
    assert "grafana_dashboard" not in moved["metadata"]["labels"]
    assert moved["metadata"]["annotations"] == {"grafana_folder": "Operators"}


def test_the_prometheus_rule_holds_the_rules_file(helm: Helm, tmp_path: Path) -> None:
    values = {"prometheusRule": {"enabled": True, "labels": {"release": "kps"}}}
    rule = one(render(helm, tmp_path, values), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps"
    # Alert templates such as {{ $labels.policy }} reach Prometheus as they are, not as Helm's.
    assert rule["spec"] == yaml.safe_load(RULES.read_text())


def test_bad_sidecar_label_values_are_refused_by_name(helm: Helm, tmp_path: Path) -> None:
    for values, named in (
        ({"dashboard": {"enabled": True, "labelValue": "not a label"}}, "/dashboard/labelValue"),
        ({"dashboard": {"enabled": True, "label": ""}}, "/dashboard/label"),
        ({"dashboard": {"enabled": True, "namespace": "Grafana"}}, "/dashboard/namespace"),
        ({"prometheusRule": {"enabled": "yes"}}, "/prometheusRule/enabled"),
    ):
        assert_refused(helm, tmp_path, values, named)


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def rule_queries() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def exported() -> dict[str, set[str]]:
    """Each metric family the operator exports, with the sample names a query reads it by."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {f.name: {f.name + s for s in suffixes[f.type]} for f in OperatorMetrics().registry.collect()}


def test_every_metric_named_is_one_the_operator_exports() -> None:
    names = set().union(*exported().values())
    for expr in dashboard_queries() + rule_queries():
        used = set(re.findall(r"\bscalekeeper_\w+", expr))
        assert used and used <= names, f"{expr}: {sorted(used - names)} not exported"


def test_the_dashboard_covers_every_family_the_operator_exports() -> None:
    """Each of the operator's metrics has a panel: a new one without is a gap in what the dashboard shows."""
    shown = {m for expr in dashboard_queries() for m in re.findall(r"\bscalekeeper_\w+", expr)}
    missing = sorted(family for family, names in exported().items() if not names & shown)
    assert not missing, missing


def test_the_kind_cluster_scrapes_the_operator_as_the_service_monitor_does(
    helm: Helm, tmp_path: Path
) -> None:
    """The path the cluster tests prove is the chart's: its metrics Service, with honor labels; and the
    cluster's Prometheus evaluates the rules file."""
    docs = render(helm, tmp_path, {"serviceMonitor": {"enabled": True}})
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    service = one(docs, "Service")
    addon = list(yaml.safe_load_all((ROOT / "hack" / "addons" / "prometheus.yaml").read_text()))
    config = yaml.safe_load(
        next(d for d in addon if d and d["kind"] == "ConfigMap")["data"]["prometheus.yml"]
    )
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "scalekeeper")
    assert job["honor_labels"] is True and endpoint["honorLabels"] is True
    keep = next(r for r in job["relabel_configs"] if r.get("action") == "keep")
    labels = service["metadata"]["labels"]
    port = next(p["name"] for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    wanted = f"{labels['app.kubernetes.io/name']};{labels['app.kubernetes.io/component']};{port}"
    assert keep["regex"] == wanted
    prometheus = next(d for d in addon if d and d["kind"] == "Deployment")["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in prometheus["containers"][0]["volumeMounts"]}
    rules_volume = next(
        v["name"] for v in prometheus["volumes"] if v.get("configMap", {}).get("name") == "prometheus-rules"
    )
    assert config["rule_files"] == [f"{mounts[rules_volume]}/*.yaml"] and RULES.suffix == ".yaml"
