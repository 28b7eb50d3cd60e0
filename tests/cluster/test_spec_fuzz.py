"""Over a thousand generated ScalingPolicies against the real API server and the model.

Each spec is a valid one with up to three random edits (a leaf set to a hostile value, a key removed, an
unknown key added, a list entry duplicated). Each goes to the API server as a server-side dry-run create
(so nothing is stored, and the answer is what a `kubectl apply` would get) and:
- refused: the message names a field under `spec.`, and the model refuses the spec too;
- accepted: the model reads what the server would store, and the engine, fed arbitrary metric values and
  replica counts, never decides outside [min, max] for any target; every object the operator would make
  from it (the owned HPA, templated worker Deployments) passes a server-side dry-run; and each workload is
  sized by one tier of the policy at most.
Beside the generic edits, the hostile values include the classes found accepted but unusable before: counts
past int32, long names, blank queries, one Deployment named by two tiers, templates that are no pod's.
A sample of the accepted ones is then created for real in a namespace the operator serves: it gives each a
status and keeps running. The counts are printed and written to logs/spec-fuzz.txt.
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.rest import ApiException

from scalekeeper import model
from scalekeeper.decision import decide
from scalekeeper.kube.dryrun import dry_run_call
from scalekeeper.kube.owners import OwnerRef
from scalekeeper.policy import claim_keys
from scalekeeper.tiers import tiers_of
from scalekeeper.tiers.read_replicas import READ_REPLICAS
from scalekeeper.tiers.web import WEB
from scalekeeper.tiers.workers import worker_target
from tests.valid_specs import VALID_SPECS

from .conftest import ROOT, Cluster
from .kube_helpers import policy_status
from .operator_fixture import RunningOperator, install_crd
from .waiting import wait_cycles, wait_for

pytestmark = pytest.mark.cluster

EXAMPLES = 1100
CREATED_FOR_REAL = 40

# Copied on every draw: an edit may change a drawn dict or list in place, and a shared one would make the
# strategy depend on what earlier examples did.
HOSTILE = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0, 1800, 1801, 100, 101, 2**31, -(2**31), 10**15, 0.5, 1e-9, 1e300]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
    st.sampled_from(["", "x" * 300, "Max", "Min", "Disabled", "Pods", "Percent", "Enforce", "DryRun", "v1"]),
    # the classes of issue 15: bounds, long names, blank queries, overlapping targets, templates
    st.sampled_from(
        [2**31 - 1, " ", "\t\n", "a" * 250, "a" * 63, "web", "video-worker", "postgresql.cnpg.io"]
    ),
    st.sampled_from(
        [
            {"containers": [{"name": "w", "image": "i"}]},
            {"spec": {"containers": []}},
            {"spec": {"containers": [{"name": "w"}]}},
            {"spec": {"containers": [{"name": "w", "image": "i"}]}},
        ]
    ),
    st.booleans(),
    st.none(),
    st.just([]),
    st.just({}),
).map(copy.deepcopy)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            out.append((*prefix, key))
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            out.append((*prefix, i))
            out += _paths(value, (*prefix, i))
    return out


def _parent(spec: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = spec
    for step in path[:-1]:
        node = node[step]
    return node


def _near(value: Any) -> st.SearchStrategy[Any]:
    """A value of the same type, often still valid: numbers moved around their bounds."""
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(min(-2, value), max(2 * value, value) + 2)
    if isinstance(value, float):
        return st.floats(min(-1.0, value), max(2 * value, value) + 1.0, allow_nan=False, allow_infinity=False)
    if isinstance(value, str):
        return st.sampled_from([value, value.upper(), value + "-2", ""])
    return st.just(copy.deepcopy(value))


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    spec = copy.deepcopy(draw(st.sampled_from([s for _, s in VALID_SPECS])))
    # Mostly one edit or none, so that both answers come often enough to be checked.
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))):
        paths = _paths(spec)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _parent(spec, path), path[-1]
        edit = draw(st.sampled_from(["set", "set", "set", "remove", "unknown", "duplicate"]))
        if edit == "set":
            parent[last] = draw(st.one_of(HOSTILE, _near(parent[last])))
        elif edit == "remove":
            del parent[last]
        elif edit == "unknown" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["extra", "minreplicas", "Queue", "replicas"]))] = draw(HOSTILE)
        elif edit == "duplicate" and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[last]))
    return spec


def _dry_run_create(cluster: Cluster, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {"apiVersion": model.API_VERSION, "kind": model.KIND, "metadata": {"name": "fuzz"}, "spec": spec}
    created: dict[str, Any] = client.CustomObjectsApi(cluster.api).create_namespaced_custom_object(
        model.GROUP, model.VERSION, namespace, model.PLURAL, body, dry_run="All", field_validation="Strict"
    )
    return created


def _bounds(spec: model.ScalingPolicySpec) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    if spec.web is not None:
        out[WEB] = (spec.web.min_replicas, spec.web.max_replicas)
    for w in spec.workers or []:
        out[worker_target(w.queue)] = (w.min_replicas, w.max_replicas)
    if spec.read_replicas is not None:
        out[READ_REPLICAS] = (spec.read_replicas.min_replicas, spec.read_replicas.max_replicas)
    return out


metric_values = st.one_of(
    st.none(),
    st.floats(min_value=-1e6, max_value=1e12),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300]),
)


def test_a_thousand_generated_specs_are_refused_naming_a_field_or_sized_within_bounds(
    cluster: Cluster, namespace: str, running_operator: RunningOperator
) -> None:
    install_crd(cluster)
    counts: Counter[str] = Counter()
    accepted: list[dict[str, Any]] = []
    disagreements: list[str] = []
    dry_run = dry_run_call(cluster.api)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(specs(), st.data())
    def check(spec: dict[str, Any], data: st.DataObject) -> None:
        counts["generated"] += 1
        try:
            stored = _dry_run_create(cluster, namespace, spec)
        except ApiException as exc:
            assert exc.status in (400, 422), (exc.status, exc.body)
            message = json.loads(exc.body).get("message", "")
            # "spec.web.minReplicas: ..." or, for a rule on the whole spec, "spec: ... web, workers, ..."
            assert "spec." in message or "spec: " in message, f"refusal names no field: {message}"
            counts["refused by the API server"] += 1
            try:
                model.parse_spec(spec)
            except model.SpecError:
                return
            # The model would take what the API server refuses: record it, it is checked below.
            disagreements.append(
                f"server refused, model accepted: {json.dumps(spec)[:300]} -> {message[:300]}"
            )
            return
        counts["accepted by the API server"] += 1
        try:
            parsed = model.parse_spec(stored["spec"])
        except model.SpecError as exc:
            # Allowed by design (the operator reports SpecValid=False and an Event), but counted.
            counts["accepted, then refused by the model (SpecValid=False)"] += 1
            disagreements.append(f"server accepted, model refused: {exc.messages[:2]}")
            return
        counts["accepted and sized"] += 1
        if len(accepted) < CREATED_FOR_REAL:
            accepted.append(stored["spec"])
        tiers = tiers_of(parsed, OwnerRef(namespace, "fuzz", "00000000-0000-0000-0000-000000000000"))
        keys = list(claim_keys(tiers).values())
        assert len(keys) == len(set(keys)), f"one workload named by two tiers: {keys}"
        for tier in tiers:
            for verdict in tier.verify(dry_run):
                counts["derived objects dry-run"] += 1
                if verdict.refused is None:
                    continue
                # What the operator derives always passes; a user's own pod template is passed through as
                # written, and only the API server knows all of a pod's rules: the operator's dry-run tells
                # that one (SpecValid=False, the tier holds), so it is counted, not failed.
                assert "Deployment" in verdict.refused and "template" in verdict.refused, (
                    verdict.refused,
                    stored["spec"],
                )
                counts["derived objects refused: the user's pod template (held, SpecValid=False)"] += 1
        bounds = _bounds(parsed)
        observed = {name: data.draw(st.one_of(st.none(), st.integers(0, 10**6))) for name in bounds}
        samples = {
            name: {
                metric: data.draw(metric_values)
                for metric in (
                    "request_rate",
                    "waiting",
                    "in_flight",
                    "arrival_rate",
                    "completion_rate",
                    "load",
                )
            }
            for name in bounds
        }
        decision = decide(parsed, observed, samples, {}, now=1_800_000_000.0)
        for name, (low, high) in bounds.items():
            d = decision.targets[name]
            if not d.exists:
                continue
            assert low <= d.desired <= high, (name, low, high, d)
            assert not math.isnan(float(d.desired))

    check()

    # Real objects: the operator serves them all and stays up.
    objects = client.CustomObjectsApi(cluster.api)
    for i, spec in enumerate(accepted):
        body = {
            "apiVersion": model.API_VERSION,
            "kind": model.KIND,
            "metadata": {"name": f"fz-{i}"},
            "spec": spec,
        }
        objects.create_namespaced_custom_object(model.GROUP, model.VERSION, namespace, model.PLURAL, body)
    for i in range(len(accepted)):
        wait_for(
            f"a status on fz-{i}",
            lambda i=i: policy_status(cluster, namespace, f"fz-{i}").get("conditions"),  # type: ignore[misc]
            timeout=90,
        )
    # A round more of cycles, from the memory the first left (a cycle that fails is not counted: told
    # below, after the failures it would log).
    try:
        wait_cycles(running_operator, 1, timeout=90)
        stalled = ""
    except AssertionError as exc:
        stalled = str(exc)
    if running_operator.process is not None:
        assert running_operator.process.poll() is None, "the operator died"
    failures = [
        line for line in running_operator.logs().splitlines() if "cycle failed" in line and namespace in line
    ]

    report = "\n".join(
        [f"{k}: {v}" for k, v in sorted(counts.items())]
        + [f"created for real and given a status: {len(accepted)}", f"disagreements: {len(disagreements)}"]
        + disagreements[:20]
    )
    (ROOT / "logs").mkdir(exist_ok=True)
    (ROOT / "logs" / "spec-fuzz.txt").write_text(report + "\n")
    print(report)
    assert counts["generated"] >= 1000, report
    assert counts["refused by the API server"] >= 300 and counts["accepted and sized"] >= 150, report
    assert not failures, failures[:3]
    assert not stalled, stalled
    assert not [d for d in disagreements if d.startswith("server refused")], report
