"""The chart's `celeryExporter`, rendered with the real helm binary (test_chart's helpers): nothing by
default; per broker a Deployment of one pod (Recreate) and a Service, whose arguments the exporter's own
parser reads back; the broker URL only from a Secret; labels that neither the operator's selectors nor
another broker's match; the ServiceMonitor's honorLabels; and the values schema refusing bad brokers by
name."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from scalekeeper_celery_exporter.cli import parser
from tests.unit.helm_chart import (
    CHART,
    FULLNAME,
    NAMESPACE,
    Helm,
    _differences,
    _kube_version,
    _values_file,
    assert_refused,
    helm,
    of_kind,
    render,
)

__all__ = ["helm"]

EXPORTER = f"{FULLNAME}-celery-exporter"
APP_VERSION = str(yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"])

SHOP: dict[str, Any] = {
    "name": "shop",
    "brokerUrlSecret": {"name": "shop-celery", "key": "broker-url"},
    "queues": ["emails", "video"],
    "redisKeyPrefix": "shop:",
    "rateWindow": 30,
}
BILLING: dict[str, Any] = {
    "name": "billing",
    "app": "billing-workers",
    "brokerUrlSecret": {"name": "billing-celery", "key": "url"},
    "rabbitmqManagementUrl": "http://rabbitmq.billing.svc:15672",
    "extraArgs": ["--log-level=DEBUG"],
}
TWO_BROKERS: dict[str, Any] = {"celeryExporter": {"enabled": True, "brokers": [SHOP, BILLING]}}
WITH_SERVICE_MONITORS: dict[str, Any] = {
    "serviceMonitor": {"enabled": True},
    "celeryExporter": {
        "enabled": True,
        "brokers": [SHOP, BILLING],
        "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}, "interval": "15s"},
    },
}


def exporter_objects(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in docs if "celery-exporter" in d["metadata"]["name"]]


def by_name(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind(docs, kind)}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def exporter_container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(c, dict)
    return c


def test_the_default_and_disabled_render_no_exporter(helm: Helm, tmp_path: Path) -> None:
    assert exporter_objects(render(helm, tmp_path, {})) == []
    disabled = {"celeryExporter": {"enabled": False, "brokers": [SHOP]}}
    assert exporter_objects(render(helm, tmp_path, disabled)) == []


def test_each_broker_gets_one_recreated_pod_and_a_service(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, TWO_BROKERS)
    deployments = {n: d for n, d in by_name(docs, "Deployment").items() if n.startswith(EXPORTER)}
    services = {n: s for n, s in by_name(docs, "Service").items() if n.startswith(EXPORTER)}
    names = {f"{EXPORTER}-shop", f"{EXPORTER}-billing"}
    assert set(deployments) == names and set(services) == names
    assert {d["kind"] for d in exporter_objects(docs)} == {"Deployment", "Service"}  # no ServiceMonitor
    for name, d in deployments.items():
        assert d["metadata"]["namespace"] == NAMESPACE
        # Two pods of one broker, even during a rollout, would double the series the operator sums.
        assert d["spec"]["replicas"] == 1
        assert d["spec"]["strategy"] == {"type": "Recreate"}
        c = exporter_container(d)
        assert c["image"] == f"ghcr.io/scalekeeper/scalekeeper-celery-exporter:{APP_VERSION}"
        assert c["ports"] == [{"name": "metrics", "containerPort": 9808, "protocol": "TCP"}]
        for probe in ("livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "9808",
            "prometheus.io/path": "/metrics",
        }
        service = services[name]
        assert service["spec"]["selector"] == d["spec"]["selector"]["matchLabels"]
        assert matches(service["spec"]["selector"], pod_labels(d))
        assert service["spec"]["ports"] == [
            {"name": "metrics", "port": 9808, "targetPort": "metrics", "protocol": "TCP"}
        ]


def test_the_arguments_are_the_exporters_own_flags(helm: Helm, tmp_path: Path) -> None:
    """The rendered arguments, read by the exporter's real parser: a misspelt or renamed flag fails here."""
    deployments = by_name(render(helm, tmp_path, TWO_BROKERS), "Deployment")
    shop = exporter_container(deployments[f"{EXPORTER}-shop"])
    assert shop["args"] == [
        "--app=shop",
        "--port=9808",
        "--queues=emails,video",
        "--redis-key-prefix=shop:",
        "--rate-window=30",
    ]
    args = parser().parse_args(shop["args"])
    assert (args.app, args.queues, args.redis_key_prefix, args.rate_window) == (
        "shop",
        ["emails", "video"],
        "shop:",
        30.0,
    )
    billing = exporter_container(deployments[f"{EXPORTER}-billing"])
    args = parser().parse_args(billing["args"])
    assert args.app == "billing-workers"
    assert args.queues is None  # discovered
    assert args.redis_key_prefix is None
    assert args.rabbitmq_management_url == "http://rabbitmq.billing.svc:15672"
    assert args.log_level == "DEBUG"
    assert args.rate_window == 60.0  # the exporter's default: no flag
    for c, secret in ((shop, SHOP["brokerUrlSecret"]), (billing, BILLING["brokerUrlSecret"])):
        # The broker URL, with its password, comes from the Secret only: the variable the exporter reads.
        assert c["env"] == [
            {"name": parser().parse_args([]).broker_url_env, "valueFrom": {"secretKeyRef": secret}}
        ]


def test_a_key_prefix_starting_with_a_dash_stays_the_flags_value(helm: Helm, tmp_path: Path) -> None:
    values = {"celeryExporter": {"enabled": True, "brokers": [{**SHOP, "redisKeyPrefix": "-shop:"}]}}
    deployment = by_name(render(helm, tmp_path, values), "Deployment")[f"{EXPORTER}-shop"]
    assert parser().parse_args(exporter_container(deployment)["args"]).redis_key_prefix == "-shop:"


def test_no_selector_matches_another_components_pods(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, WITH_SERVICE_MONITORS)
    deployments = of_kind(docs, "Deployment")
    assert len(deployments) == 3  # the operator and two exporters
    for d in deployments:
        for other in deployments:
            if other is not d:
                selector = d["spec"]["selector"]["matchLabels"]
                assert not matches(selector, pod_labels(other)), (d["metadata"]["name"], other["metadata"])
    operator_service = by_name(docs, "Service")[f"{FULLNAME}-metrics"]
    for d in deployments:
        if d["metadata"]["name"].startswith(EXPORTER):
            assert not matches(operator_service["spec"]["selector"], pod_labels(d))
            # An `app` pod label becomes a target label that an exporter's own `app` would have to beat.
            assert "app" not in pod_labels(d)
            assert pod_labels(d)["scalekeeper.dev/celery-broker"] in ("shop", "billing")


def test_service_monitor_keeps_the_exporters_labels(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, WITH_SERVICE_MONITORS)
    monitors = by_name(docs, "ServiceMonitor")
    assert set(monitors) == {FULLNAME, EXPORTER}
    sm = monitors[EXPORTER]
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint == {"port": "metrics", "path": "/metrics", "interval": "15s", "honorLabels": True}
    services = by_name(docs, "Service")
    selected = {
        n
        for n, s in services.items()
        if matches(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
    }
    assert selected == {f"{EXPORTER}-shop", f"{EXPORTER}-billing"}
    # The operator's ServiceMonitor selects its own Service only.
    operator_selector = monitors[FULLNAME]["spec"]["selector"]["matchLabels"]
    assert {n for n, s in services.items() if matches(operator_selector, s["metadata"]["labels"])} == {
        f"{FULLNAME}-metrics"
    }
    values = json.loads(json.dumps(WITH_SERVICE_MONITORS))
    values["celeryExporter"]["serviceMonitor"]["honorLabels"] = False
    (endpoint,) = by_name(render(helm, tmp_path, values), "ServiceMonitor")[EXPORTER]["spec"]["endpoints"]
    assert endpoint["honorLabels"] is False


def test_pods_are_annotated_for_scraping_only_without_the_service_monitor(helm: Helm, tmp_path: Path) -> None:
    # Both would have a Prometheus that does both scrape every series twice, and the operator sum it twice.
    plain = by_name(render(helm, tmp_path, TWO_BROKERS), "Deployment")[f"{EXPORTER}-shop"]
    assert plain["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    monitored = by_name(render(helm, tmp_path, WITH_SERVICE_MONITORS), "Deployment")[f"{EXPORTER}-shop"]
    assert "annotations" not in monitored["spec"]["template"]["metadata"]


def test_pods_are_locked_down_like_the_operators(helm: Helm, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, TWO_BROKERS)
    deployments = by_name(docs, "Deployment")
    operator = deployments[FULLNAME]["spec"]["template"]["spec"]
    for name in (f"{EXPORTER}-shop", f"{EXPORTER}-billing"):
        pod = deployments[name]["spec"]["template"]["spec"]
        assert pod["securityContext"] == operator["securityContext"]
        assert (
            exporter_container(deployments[name])["securityContext"]
            == (operator["containers"][0]["securityContext"])
        )
        assert pod["automountServiceAccountToken"] is False
        resources = exporter_container(deployments[name])["resources"]
        assert resources["requests"] and resources["limits"]["memory"]


def test_image_digest_and_annotations_off(helm: Helm, tmp_path: Path) -> None:
    digest = "sha256:" + "a" * 64
    values = {
        "celeryExporter": {
            "enabled": True,
            "brokers": [SHOP],
            "scrapeAnnotations": False,
            "image": {"repository": "localhost:5001/scalekeeper-celery-exporter", "digest": digest},
        }
    }
    deployment = by_name(render(helm, tmp_path, values), "Deployment")[f"{EXPORTER}-shop"]
    assert exporter_container(deployment)["image"] == f"localhost:5001/scalekeeper-celery-exporter@{digest}"
    assert "annotations" not in deployment["spec"]["template"]["metadata"]


def test_helm_lint_with_the_exporter(helm: Helm, tmp_path: Path) -> None:
    values = _values_file(tmp_path, WITH_SERVICE_MONITORS)
    result = helm.run(
        "lint", str(CHART), "--strict", "-n", NAMESPACE, "--kube-version", _kube_version(), "-f", values
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout + result.stderr
    assert "[WARNING]" not in out and "[ERROR]" not in out, out


def test_rendered_exporter_objects_are_valid_api_objects(helm: Helm, tmp_path: Path) -> None:
    from kubernetes import client

    api = client.ApiClient()
    objects = exporter_objects(render(helm, tmp_path, TWO_BROKERS))
    assert len(objects) == 4
    for doc in objects:
        model = api.deserialize(json.dumps(doc), f"V1{doc['kind']}", "application/json")
        problems = list(_differences(doc, api.sanitize_for_serialization(model)))
        assert not problems, f"{doc['kind']} {doc['metadata']['name']}: {problems}"


def _with(**broker: Any) -> dict[str, Any]:
    """Values enabling the exporter for SHOP changed by `broker` (a None value removes the field)."""
    changed = {k: v for k, v in {**SHOP, **broker}.items() if v is not None}
    return {"celeryExporter": {"enabled": True, "brokers": [changed]}}


# values -> what the error must name: the schema's path, or the template's value name.
INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "enabled-without-brokers": ({"celeryExporter": {"enabled": True}}, "/celeryExporter/brokers"),
    "name-upper-case": (_with(name="Shop"), "/celeryExporter/brokers/0/name"),
    "name-dots": (_with(name="shop.redis"), "/celeryExporter/brokers/0/name"),
    "name-missing": (_with(name=None), "missing property 'name'"),
    "secret-missing": (_with(brokerUrlSecret=None), "missing property 'brokerUrlSecret'"),
    "secret-key-missing": (_with(brokerUrlSecret={"name": "s"}), "/celeryExporter/brokers/0/brokerUrlSecret"),
    "url-as-a-value": (_with(brokerUrl="redis://:pw@redis:6379/0"), "'brokerUrl' not allowed"),
    "queue-with-comma": (_with(queues=["emails,video"]), "/celeryExporter/brokers/0/queues/0"),
    "queues-twice": (_with(queues=["emails", "emails"]), "/celeryExporter/brokers/0/queues"),
    "prefix-glob": (_with(redisKeyPrefix="shop[12]:"), "/celeryExporter/brokers/0/redisKeyPrefix"),
    "rate-window-zero": (_with(rateWindow=0), "/celeryExporter/brokers/0/rateWindow"),
    "management-url-credentials": (
        _with(rabbitmqManagementUrl="http://guest:guest@rabbitmq:15672"),
        "/celeryExporter/brokers/0/rabbitmqManagementUrl",
    ),
    "extra-args-string": (_with(extraArgs="--log-level=DEBUG"), "/celeryExporter/brokers/0/extraArgs"),
    "honor-labels-string": (
        {"celeryExporter": {"serviceMonitor": {"enabled": True, "honorLabels": "yes"}}},
        "/celeryExporter/serviceMonitor/honorLabels",
    ),
    "duplicate-names": (
        {"celeryExporter": {"enabled": True, "brokers": [SHOP, {**BILLING, "name": "shop"}]}},
        'celeryExporter.brokers[1].name: "shop"',
    ),
    "name-too-long-for-a-service": (_with(name="x" * 40), "celeryExporter.brokers[0].name"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_brokers_fail_naming_the_value(helm: Helm, tmp_path: Path, name: str) -> None:
    assert_refused(helm, tmp_path, *INVALID[name])


def test_every_broker_field_is_in_the_readme_table() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    fields = schema["properties"]["celeryExporter"]["properties"]["brokers"]["items"]["properties"]
    readme = (CHART / "README.md").read_text()
    table = readme.split("| Field of a `celeryExporter.brokers` entry |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `(\w+)", table, flags=re.MULTILINE))
    assert documented == set(fields), f"README broker table {sorted(documented)} vs schema {sorted(fields)}"
