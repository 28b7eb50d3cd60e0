"""The chart's Grafana dashboard and alert rules against the cluster's Prometheus, which scrapes the chart's
operator as its ServiceMonitor would, with honor labels, and evaluates the rules
(hack/addons/prometheus.yaml). Only the operator the chart installs is scraped: a local process is not."""

from __future__ import annotations

import json
import re
from typing import Any

from .conftest import Cluster
from .operator_fixture import CHART, LEASE_NAMESPACE
from .test_operator_basics import prometheus_value
from .waiting import wait_for

DASHBOARD = CHART / "dashboards" / "scalekeeper.json"
# Grafana's own variables as it sets them for a 1 s scrape interval over the last hour: $__rate_interval is at
# least four scrape intervals and one $__interval more than the scrape interval; a minute covers both.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
_LABEL_VALUES = re.compile(r"^label_values\((?P<selector>.+),\s*(?P<label>\w+)\)$")


def expand(expr: str, variables: dict[str, str]) -> str:
    """`expr` with each $name and ${name} replaced, longer names first ($__range is not $__rate_interval)."""
    for name in sorted(variables, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", variables[name]).replace("$" + name, variables[name])
    assert "$" not in expr, f"a variable left in {expr}"
    return expr


def assert_every_panel_answers(cluster: Cluster, namespace: str, policy: str) -> None:
    """The dashboard's variables offer the policy and the operator's namespace, and with them chosen every
    panel's query returns series. No panel is excused: the operator exports its write-error counters at 0,
    and every other series once it serves a policy."""
    dashboard = json.loads(DASHBOARD.read_text())
    chosen = {"namespace": namespace, "policy": policy, "operator_namespace": LEASE_NAMESPACE}
    variables = {**BUILTINS, **chosen}
    for var in dashboard["templating"]["list"]:
        if var["type"] != "query":
            continue
        match = _LABEL_VALUES.match(var["query"]["query"])
        assert match, f"variable {var['name']}: not a label_values() query"
        label = match["label"]
        offered = expand(f"group by ({label}) ({match['selector']})", variables)
        wait_for(
            f"variable {var['name']} to offer {chosen[var['name']]}",
            lambda q=offered, label=label, want=chosen[var["name"]]: any(  # type: ignore[misc]
                r["metric"].get(label) == want for r in prometheus_value(cluster, q)
            ),
            timeout=30,
        )
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            query = expand(target["expr"], variables)
            wait_for(
                f"panel {panel['title']!r} to answer {query}",
                lambda q=query: prometheus_value(cluster, q),  # type: ignore[misc]
                timeout=30,
            )


def alert_seen(cluster: Cluster, alert: str, **labels: str) -> list[dict[str, Any]]:
    """The alert's ALERTS series carrying `labels`, pending or firing."""
    selector = ", ".join([f'alertname="{alert}"', *(f'{k}="{v}"' for k, v in labels.items())])
    return prometheus_value(cluster, f"ALERTS{{{selector}}}")
