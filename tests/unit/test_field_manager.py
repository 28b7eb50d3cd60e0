"""Each replica writes under a field manager of its own, named from its identity: the API server takes it
from the User-Agent of a write that names none, so an object's managedFields tell which replica wrote."""

from __future__ import annotations

import pytest
from kubernetes import config

from scalekeeper import package_version, runtime


def test_the_user_agent_names_the_replica_before_its_first_slash(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_cluster() -> None:
        raise config.ConfigException("not in a pod")

    monkeypatch.setattr(config, "load_incluster_config", no_cluster)
    monkeypatch.setattr(config, "load_kube_config", lambda: None)
    api = runtime.kube_api(4, "scalekeeper-7d9f-x2k4p")
    assert api.user_agent == f"scalekeeper-scalekeeper-7d9f-x2k4p/{package_version()}"
    assert api.user_agent.partition("/")[0] == runtime.field_manager("scalekeeper-7d9f-x2k4p")


def test_a_field_manager_fits_the_api_servers_128_characters() -> None:
    assert len(runtime.field_manager("h" * 200)) == 128
