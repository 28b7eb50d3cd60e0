"""The generated CRD: structural, up to date, and as strict as the pydantic model.

There is no API server in unit tests, so ``LocalServer`` (tests/unit/local_api_server.py) stands in for
the parts of one that matter here.
"""

from __future__ import annotations

import functools
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from pydantic import ValidationError

from scalekeeper import crdgen
from scalekeeper.model import ScaleDownRules, ScaleUpRules, ScalingPolicySpec, error_messages
from tests.invalid_specs import INVALID_CASES
from tests.unit.local_api_server import CelParser, LocalServer
from tests.unit.spec_strategies import specs
from tests.valid_specs import VALID_SPECS

REPO = Path(__file__).resolve().parents[2]
CRD_FILE = REPO / "crds" / "scalingpolicies.scalekeeper.dev.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return crdgen.build_crd()


@pytest.fixture(scope="module")
def root(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(node: Any, path: str = "") -> Any:
    """Yield (path, schema) for every schema node below ``node``."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}[*]")


# ----------------------------------------------------------------- structural


def test_no_refs_or_unions_anywhere(crd: dict[str, Any]) -> None:
    text = json.dumps(crd)
    for word in ('"$ref"', '"$defs"', '"anyOf"', '"oneOf"', '"allOf"', '"not"', '"nullable"', '"title"'):
        assert word not in text, word


def test_every_property_has_type_and_description(root: dict[str, Any]) -> None:
    for path, node in walk(root):
        assert "type" in node, path
        # Root metadata may hold nothing but its type: the API server rejects more.
        if path.endswith(("[]", "[*]")) or path == ".metadata":
            continue
        assert node.get("description"), f"{path} has no description"


def test_structural_rules(root: dict[str, Any]) -> None:
    for path, node in walk(root):
        # properties and additionalProperties are mutually exclusive in a structural schema.
        assert not ("properties" in node and "additionalProperties" in node), path
        if node["type"] == "array":
            assert "items" in node, path
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert node.get(key, True) is True, f"{path}: {key} must be a boolean in OpenAPI v3.0"
        if "default" in node and "enum" in node:
            assert node["default"] in node["enum"], path
        for req in node.get("required", []):
            assert req in node["properties"], f"{path} requires unknown {req}"


def test_descriptions_reach_kubectl_explain(root: dict[str, Any]) -> None:
    workers = root["properties"]["spec"]["properties"]["workers"]
    fields = workers["items"]["properties"]
    assert set(fields) >= {
        "queue",
        "deployment",
        "template",
        "minReplicas",
        "maxReplicas",
        "tasksPerWorker",
        "drainSeconds",
        "targetWaitSeconds",
        "protectBusyWorkers",
        "activationTasks",
        "concurrency",
        "prefetchMultiplier",
        "metrics",
        "cooldownSeconds",
        "behavior",
    }
    assert "celery_queue_waiting_tasks" in fields["metrics"]["properties"]["waiting"]["description"]


def test_special_markers(root: dict[str, Any]) -> None:
    spec = root["properties"]["spec"]
    workers = spec["properties"]["workers"]
    assert workers["x-kubernetes-list-type"] == "map"
    assert workers["x-kubernetes-list-map-keys"] == ["queue"]
    assert workers["maxItems"] == 50
    assert "queue" in workers["items"]["required"]
    template = workers["items"]["properties"]["template"]
    # a pod template the API server can check the essentials of (a spec, containers with name and image)
    assert template["type"] == "object" and template["x-kubernetes-preserve-unknown-fields"] is True
    assert template["required"] == ["spec"]
    pod = template["properties"]["spec"]
    assert pod["required"] == ["containers"] and pod["x-kubernetes-preserve-unknown-fields"] is True
    containers = pod["properties"]["containers"]
    assert containers["minItems"] == 1 and containers["items"]["required"] == ["name", "image"]
    for path, node in walk(root):
        if path.endswith(".policies"):
            assert node["maxItems"] == 10, path
    assert root["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True
    assert spec["properties"]["mode"]["enum"] == ["Enforce", "DryRun"]
    assert spec["properties"]["mode"]["default"] == "Enforce"
    per_replica = spec["properties"]["web"]["properties"]["requestRate"]["properties"]["perReplica"]
    assert per_replica["minimum"] == 0 and per_replica["exclusiveMinimum"] is True


def test_crd_defaults_match_model_defaults(root: dict[str, Any]) -> None:
    # The policy-list defaults are written twice in the model (default_factory and
    # json_schema_extra, which pydantic cannot derive from a factory); they must agree.
    behavior = root["properties"]["spec"]["properties"]["web"]["properties"]["behavior"]["properties"]
    for direction, rules in (("scaleUp", ScaleUpRules()), ("scaleDown", ScaleDownRules())):
        props = behavior[direction]["properties"]
        dumped = rules.model_dump(by_alias=True, mode="json")
        assert props["policies"]["default"] == dumped["policies"]
        assert props["stabilizationWindowSeconds"]["default"] == dumped["stabilizationWindowSeconds"]
        assert props["selectPolicy"]["default"] == dumped["selectPolicy"]


def test_crd_metadata(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == "scalingpolicies.scalekeeper.dev"
    spec = crd["spec"]
    assert spec["group"] == "scalekeeper.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "ScalingPolicy"
    assert spec["names"]["plural"] == "scalingpolicies"
    assert spec["names"]["shortNames"] == ["sp"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    assert version["schema"]["openAPIV3Schema"]["properties"]["metadata"] == {"type": "object"}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Mode", "Web", "Workers", "Replicas", "Ready", "Bottleneck", "Served-By", "Age"]


def test_cel_rules_present_with_field_named_messages(root: dict[str, Any]) -> None:
    rules = {
        path: [r["message"] for r in node.get("x-kubernetes-validations", [])]
        for path, node in walk(root)
        if node.get("x-kubernetes-validations")
    }
    expected = {
        ".spec": [
            "spec must set at least one of web, workers, readReplicas",
            "spec.workers[].queue must be unique",
            "spec.workers[].deployment must not name a Deployment another tier of the policy sizes",
            "spec.readReplicas.target must not name a Deployment another tier of the policy sizes",
        ],
        ".spec.web": [
            "spec.web.minReplicas must be <= spec.web.maxReplicas",
            "spec.web must set at least one of cpuUtilization, memoryUtilization, requestRate",
        ],
        ".spec.workers[]": [
            "spec.workers[].minReplicas must be <= spec.workers[].maxReplicas",
            "spec.workers[] must set exactly one of deployment or template",
            "spec.workers[] must set at least one of tasksPerWorker, drainSeconds, targetWaitSeconds",
            "spec.workers[].metrics.arrivalRate is required with spec.workers[].drainSeconds: preset "
            "celery-redis-prometheus gives no arrival rate",
            "spec.workers[].metrics.arrivalRate is required with spec.workers[].targetWaitSeconds: preset "
            "celery-redis-prometheus gives no arrival rate",
        ],
        ".spec.readReplicas": [
            "spec.readReplicas.minReplicas must be <= spec.readReplicas.maxReplicas",
            "spec.readReplicas.floor must be within "
            "[spec.readReplicas.minReplicas, spec.readReplicas.maxReplicas]",
        ],
        ".spec.connectionBudget": [
            "spec.connectionBudget.reserved must be < spec.connectionBudget.maxConnections"
        ],
    }
    for path, messages in expected.items():
        assert rules[path] == messages, path
    for section in (".spec.web", ".spec.workers[]", ".spec.readReplicas"):
        for direction, limit in (("scaleUp", 1000), ("scaleDown", 100)):
            prefix = f"{section[1:]}.behavior.{direction}"
            assert rules[f"{section}.behavior.{direction}"] == [
                f"{prefix}.policies[].value must be <= {limit} when type is Percent"
            ]
    assert not any("{path}" in m for ms in rules.values() for m in ms)


# ----------------------------------------------------------- committed output


def test_committed_crd_is_current() -> None:
    assert CRD_FILE.read_text() == crdgen.render_crd(), "run: python -m scalekeeper.crdgen --write " + str(
        CRD_FILE.relative_to(REPO)
    )


def test_render_is_stable_and_parses() -> None:
    text = crdgen.render_crd()
    assert text == crdgen.render_crd()
    assert text.startswith("# Generated by `scalekeeper crd`")
    assert "Do not edit" in text.splitlines()[1]
    assert yaml.safe_load(text) == crdgen.build_crd()


def test_main_check_and_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert crdgen.main(["--check", str(CRD_FILE)]) == 0
    out = tmp_path / "crd.yaml"
    assert crdgen.main(["--write", str(out)]) == 0
    assert out.read_text() == crdgen.render_crd()
    out.write_text(out.read_text().replace("maxItems: 50", "maxItems: 49"))
    capsys.readouterr()
    assert crdgen.main(["--check", str(out)]) == 1
    diff = capsys.readouterr().out
    assert "-                maxItems: 49" in diff and "+                maxItems: 50" in diff
    assert crdgen.main(["--check", str(tmp_path / "missing.yaml")]) == 1


# ---------------------------------------- as strict as the model, by the stand-in API server


@pytest.fixture(scope="module")
def spec_schema(root: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = root["properties"]["spec"]
    return schema


def test_cel_interpreter_parses_every_rule(root: dict[str, Any]) -> None:
    count = 0
    for _, node in walk(root):
        for rule in node.get("x-kubernetes-validations", []):
            CelParser(rule["rule"]).parse()
            count += 1
    assert count >= 9 + 2 * 3


@pytest.mark.parametrize(("case", "spec"), VALID_SPECS, ids=[c[0] for c in VALID_SPECS])
def test_valid_specs_pass_the_crd(spec_schema: dict[str, Any], case: str, spec: dict[str, Any]) -> None:
    assert LocalServer(spec_schema).validate(spec) == []


SCHEMA_CASES = [c for c in INVALID_CASES if c[3] in ("schema", "unknown-field")]
CEL_CASES = [c for c in INVALID_CASES if c[3] == "cel"]


@pytest.mark.parametrize(("case", "spec", "expected", "kind"), SCHEMA_CASES, ids=[c[0] for c in SCHEMA_CASES])
def test_single_field_violations_fail_the_schema(
    spec_schema: dict[str, Any], case: str, spec: dict[str, Any], expected: str, kind: str
) -> None:
    errors = LocalServer(spec_schema, cel=False).validate(spec)
    assert errors, "the generated schema accepted it"
    assert any(expected in e for e in errors), errors


@pytest.mark.parametrize(("case", "spec", "expected", "kind"), CEL_CASES, ids=[c[0] for c in CEL_CASES])
def test_cross_field_violations_fail_the_cel_rules(
    spec_schema: dict[str, Any], case: str, spec: dict[str, Any], expected: str, kind: str
) -> None:
    # The schema alone lets them through (they really are cross-field) ...
    schema_errors = LocalServer(spec_schema, cel=False).validate(spec)
    if case != "worker-duplicate-queue":  # a list-map key duplicate is caught structurally too
        assert schema_errors == []
    # ... and the CEL rules reject them, naming the same field as pydantic.
    errors = LocalServer(spec_schema).validate(spec)
    assert any(expected in e for e in errors), errors


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(specs())
def test_crd_accepts_what_the_model_accepts(raw: dict[str, Any]) -> None:
    ScalingPolicySpec.model_validate(raw)
    assert LocalServer(_spec_schema()).validate(raw) == []


@functools.cache
def _spec_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crdgen.spec_schema()
    return schema


# Every combination a preset without arrivals meets, worked by hand: refused exactly when the worker drains,
# the preset gives no arrival rate and the policy wrote none; by the CEL rule and the model alike, naming the
# same field in the same words.
ARRIVAL_RULE_CASES = list(
    itertools.product(
        [None, "scalekeeper", "celery-redis-prometheus"],
        [None, "drainSeconds", "targetWaitSeconds"],
        [False, True],
        [False, True],
    )
)


@pytest.mark.parametrize(("preset", "reader", "arrival_rate", "metrics"), ARRIVAL_RULE_CASES)
def test_a_preset_without_arrivals_needs_an_arrival_rate_where_one_is_read(
    spec_schema: dict[str, Any], preset: str | None, reader: str | None, arrival_rate: bool, metrics: bool
) -> None:
    worker: dict[str, Any] = {"queue": "q", "deployment": "d", "maxReplicas": 2, "tasksPerWorker": 1}
    if reader:
        worker[reader] = 30
    written = {"preset": preset} if preset else {}
    if arrival_rate:
        written["arrivalRate"] = 'rate(published_total{queue="<queue>"}[1m])'
    if metrics or written:
        worker["metrics"] = written
    spec = {"workers": [worker]}
    try:
        ScalingPolicySpec.model_validate(spec)
        model_errors: list[str] = []
    except ValidationError as exc:
        model_errors = error_messages(exc)
    server_errors = LocalServer(spec_schema).validate(spec)

    if reader and not arrival_rate and preset == "celery-redis-prometheus":
        words = f"is required with {{}}{reader}: preset celery-redis-prometheus gives no arrival rate"
        field = "spec.workers[0].metrics.arrivalRate"
        assert model_errors == [f"{field}: metrics.arrivalRate {words.format('')}"]
        assert server_errors == [
            f"{field}: Required value: spec.workers[].metrics.arrivalRate {words.format('spec.workers[].')}"
        ]
    else:
        assert model_errors == server_errors == []


def test_a_condition_type_is_no_enum_so_a_newer_operator_can_write_one_before_its_crd_is_upgraded(
    root: dict[str, Any],
) -> None:
    # helm never upgrades a CRD: an enum of types would refuse every status write naming a type added later.
    status = root["properties"]["status"]
    type_schema = status["properties"]["conditions"]["items"]["properties"]["type"]
    assert "enum" not in type_schema
    server = LocalServer(status, cel=False)
    condition = {"status": "True", "reason": "Saturated", "message": ""}
    assert server.validate({"conditions": [{**condition, "type": "Bottleneck"}]}) == []
    assert server.validate({"conditions": [{**condition, "type": "SomethingNewer"}]}) == []
    assert server.validate({"conditions": [{**condition, "type": "no spaces allowed"}]}) != []
