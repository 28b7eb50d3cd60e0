from __future__ import annotations

import pytest

from scalekeeper.config import ConfigError, OperatorConfig


def test_defaults_and_overrides() -> None:
    cfg = OperatorConfig.from_env(
        {"SCALEKEEPER_NAMESPACES": "a, b,,", "SCALEKEEPER_PROMETHEUS_URL": "http://p:9090/"}
    )
    assert cfg.namespaces == ("a", "b")
    assert cfg.prometheus_url == "http://p:9090"
    assert OperatorConfig.from_env({}).namespaces == ()


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SCALEKEEPER_MAX_WORKERS": "0"}, "SCALEKEEPER_MAX_WORKERS"),
        ({"SCALEKEEPER_PROMETHEUS_TIMEOUT_SECONDS": "soon"}, "SCALEKEEPER_PROMETHEUS_TIMEOUT_SECONDS"),
        ({"SCALEKEEPER_PROMETHEUS_TIMEOUT_SECONDS": "nan"}, "SCALEKEEPER_PROMETHEUS_TIMEOUT_SECONDS"),
        ({"SCALEKEEPER_PROMETHEUS_TIMEOUT_SECONDS": "0"}, "SCALEKEEPER_PROMETHEUS_TIMEOUT_SECONDS"),
        (
            {"SCALEKEEPER_PROMETHEUS_INSECURE_SKIP_VERIFY": "yes"},
            "SCALEKEEPER_PROMETHEUS_INSECURE_SKIP_VERIFY",
        ),
        ({"SCALEKEEPER_SHARDING": "off"}, "SCALEKEEPER_SHARDING"),
        ({"SCALEKEEPER_PROMETHEUS_URL": "prometheus:9090"}, "SCALEKEEPER_PROMETHEUS_URL"),
        ({"SCALEKEEPER_MAX_WORKERS": "soon"}, "SCALEKEEPER_MAX_WORKERS"),
        ({"SCALEKEEPER_LOG_LEVEL": "LOUD"}, "SCALEKEEPER_LOG_LEVEL"),
        ({"SCALEKEEPER_METRICS_PORT": "70000"}, "SCALEKEEPER_METRICS_PORT"),
        ({"SCALEKEEPER_LOG_FORMAT": "xml"}, "SCALEKEEPER_LOG_FORMAT"),
        ({"SCALEKEEPER_LOG_DECISIONS": "some"}, "SCALEKEEPER_LOG_DECISIONS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        OperatorConfig.from_env(env)


def test_the_dataclass_defaults_are_the_environment_defaults() -> None:
    """OperatorConfig() (tests build it directly) and an empty environment agree: one set of defaults."""
    from dataclasses import replace

    from_env = OperatorConfig.from_env({})
    assert replace(from_env, identity="") == OperatorConfig()


def test_the_lease_namespace_falls_back_to_the_pods() -> None:
    assert OperatorConfig.from_env({}).lease_namespace == "scalekeeper-system"
    assert OperatorConfig.from_env({"POD_NAMESPACE": "ops"}).lease_namespace == "ops"
    both = {"POD_NAMESPACE": "ops", "SCALEKEEPER_LEASE_NAMESPACE": "leases"}
    assert OperatorConfig.from_env(both).lease_namespace == "leases"
    assert OperatorConfig.from_env({"POD_NAME": "sk-0"}).identity == "sk-0"


def test_tracemalloc_is_a_flag() -> None:
    assert OperatorConfig.from_env({}).trace_memory is False
    assert OperatorConfig.from_env({"SCALEKEEPER_TRACEMALLOC": "1"}).trace_memory is True
    with pytest.raises(ConfigError, match="SCALEKEEPER_TRACEMALLOC"):
        OperatorConfig.from_env({"SCALEKEEPER_TRACEMALLOC": "yes"})
