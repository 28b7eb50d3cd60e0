"""Each served policy's series, kept as plain values and exposed at scrape time."""

from __future__ import annotations

from prometheus_client import generate_latest

from scalekeeper.opmetrics import OperatorMetrics


def test_decisions_count_by_rule_and_the_gauges_keep_the_last_values() -> None:
    m = OperatorMetrics()
    m.decision("shop", "p", "web", "none", 3, 2)
    m.decision("shop", "p", "web", "max", 5, 3)
    m.decision("shop", "p", "web", "max", 5, 5)
    m.metrics_read("shop", "p", False)
    get = m.registry.get_sample_value
    web = {"namespace": "shop", "policy": "p", "target": "web"}
    assert get("scalekeeper_decisions_total", {**web, "limited_by": "max"}) == 2
    assert get("scalekeeper_decisions_total", {**web, "limited_by": "none"}) == 1
    assert get("scalekeeper_desired_replicas", web) == 5
    assert get("scalekeeper_current_replicas", web) == 5
    assert get("scalekeeper_metrics_available", {"namespace": "shop", "policy": "p"}) == 0
    text = generate_latest(m.registry).decode()
    assert "# TYPE scalekeeper_decisions_total counter" in text
    assert 'scalekeeper_desired_replicas{namespace="shop",policy="p",target="web"} 5.0' in text


def test_a_forgotten_policy_has_no_series_left_and_others_keep_theirs() -> None:
    m = OperatorMetrics()
    m.decision("shop", "p", "web", "none", 3, 2)
    m.metrics_read("shop", "p", True)
    m.decision("shop", "q", "workers-q", "none", 1, 1)
    m.forget_policy("shop", "p")
    text = generate_latest(m.registry).decode()
    assert 'policy="p"' not in text
    assert (
        m.registry.get_sample_value(
            "scalekeeper_desired_replicas", {"namespace": "shop", "policy": "q", "target": "workers-q"}
        )
        == 1
    )
