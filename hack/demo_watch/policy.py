"""The demo's ScalingPolicy: the example with every window, period and cooldown shortened and every query
narrowed to the demo's namespace, and a description of what changed."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from demo_watch import ROOT

EXAMPLE_POLICY = ROOT / "manifests" / "examples" / "scalingpolicy-demo.yaml"


# The seed's numbers stay in the README and the example file; the demo divides every window, period and
# cooldown by this so a whole rise-and-fall fits in a few minutes.
DEFAULT_FACTOR = 4.0
MIN_PERIOD_SECONDS = 5  # a rate-limit period shorter than the policy's 5 s cycle would mean nothing


# --------------------------------------------------------------------------------------------- the policy


def add_label_matcher(query: str, label: str, value: str) -> str:
    """Narrow every metric selector of a PromQL expression to ``label="value"``.

    Handles ``name{...}`` (the matcher is appended inside the braces) and ``name[range]`` without braces
    (braces are added). A query that already mentions the label is returned unchanged. The demo shares the
    cluster's Prometheus with the tests, whose demo copies export the same metric names in other namespaces.
    """
    if re.search(rf"\b{re.escape(label)}\s*(=|!=|=~|!~)", query):
        return query
    matcher = f'{label}="{value}"'

    def braces(m: re.Match[str]) -> str:
        inner = m.group(1).strip().rstrip(",")
        return "{" + (f"{inner},{matcher}" if inner else matcher) + "}"

    out = re.sub(r"\{([^{}]*)\}", braces, query)
    # A bare metric name directly followed by a range: rate(x[30s]) -> rate(x{label="value"}[30s]).
    return re.sub(r"(?<![\w:}\]\)])([A-Za-z_:][A-Za-z0-9_:]*)\[", rf"\1{{{matcher}}}[", out)


def _shorter(seconds: int, factor: float, minimum: int) -> int:
    if seconds <= 0:
        return 0
    return max(minimum, math.ceil(seconds / factor))


@dataclass
class Shortening:
    """The policy to apply and every number changed on the way (path, example value, demo value)."""

    policy: dict[str, Any]
    changes: list[tuple[str, int, int]] = field(default_factory=list)
    queries: list[tuple[str, str]] = field(default_factory=list)
    behaviors: dict[str, tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=dict)  # before, after
    cooldowns: dict[str, tuple[int, int]] = field(default_factory=dict)  # workers that may scale to zero


def _shorten_behavior(
    behavior: dict[str, Any], factor: float, path: str, changes: list[tuple[str, int, int]]
) -> None:
    for direction in ("scaleUp", "scaleDown"):
        rules = behavior.get(direction) or {}
        old = int(rules.get("stabilizationWindowSeconds", 0))
        new = _shorter(old, factor, 1)
        rules["stabilizationWindowSeconds"] = new
        if new != old:
            changes.append((f"{path}.{direction}.stabilizationWindowSeconds", old, new))
        for i, pol in enumerate(rules.get("policies") or []):
            old = int(pol["periodSeconds"])
            new = _shorter(old, factor, MIN_PERIOD_SECONDS)
            pol["periodSeconds"] = new
            if new != old:
                changes.append((f"{path}.{direction}.policies[{i}].periodSeconds", old, new))
    for key in ("scaleDownDelaySeconds", "cooldownSeconds"):
        if behavior.get(key):
            old = int(behavior[key])
            behavior[key] = _shorter(old, factor, 1)
            changes.append((f"{path}.{key}", old, behavior[key]))


def _full_behavior(tier_spec: Any) -> dict[str, Any]:
    """The tier's behavior with every default filled in (the operator's own model decides them)."""
    dumped: dict[str, Any] = tier_spec.behavior.model_dump(by_alias=True, mode="json", exclude_none=True)
    return dumped


def shorten_policy(doc: Mapping[str, Any], namespace: str, factor: float = DEFAULT_FACTOR) -> Shortening:
    """The example policy made to fit a demo of a few minutes, and scoped to one namespace.

    Every stabilization window, rate-limit period, cooldown and delay is divided by ``factor`` (periods
    stay >= the 5 s cycle); tiers without a ``behavior`` get the HPA defaults, shortened the same way, so
    nothing waits the default 300 s. Every PromQL query is narrowed to ``namespace``: the cluster's
    Prometheus also scrapes the tests' copies of the demo app. The result is validated with the
    operator's own model.
    """
    from scalekeeper import model
    from scalekeeper.tiers.workers import worker_queries

    out = copy.deepcopy(dict(doc))
    spec_doc = out["spec"]
    spec = model.parse_spec(spec_doc)  # raises SpecError naming the field when the example is invalid
    result = Shortening(out)
    changes = result.changes

    def scoped(path: str, query: str) -> str:
        new = add_label_matcher(query, "namespace", namespace)
        result.queries.append((path, new))
        return new

    def behavior(tier: str, tier_doc: dict[str, Any], tier_spec: Any, path: str) -> None:
        tier_doc["behavior"] = _full_behavior(tier_spec)
        before = copy.deepcopy(tier_doc["behavior"])
        _shorten_behavior(tier_doc["behavior"], factor, path, changes)
        result.behaviors[tier] = (before, tier_doc["behavior"])

    if spec.web is not None:
        behavior("web", spec_doc["web"], spec.web, "web.behavior")
        if spec_doc["web"].get("requestRate"):
            rr = spec_doc["web"]["requestRate"]
            rr["query"] = scoped("web.requestRate.query", rr["query"])
    for w_doc, w in zip(spec_doc.get("workers") or [], spec.workers or [], strict=True):
        path = f"workers[{w.queue}]"
        behavior(f"worker/{w.queue}", w_doc, w, f"{path}.behavior")
        if w.min_replicas == 0:  # the cooldown only matters to a worker that may scale to zero
            old = w.cooldown_seconds
            w_doc["cooldownSeconds"] = _shorter(old, factor, 1)
            changes.append((f"{path}.cooldownSeconds", old, w_doc["cooldownSeconds"]))
            result.cooldowns[f"worker/{w.queue}"] = (old, w_doc["cooldownSeconds"])
        q = worker_queries(w, out["metadata"]["name"])
        filled = {
            "waiting": q.waiting,
            "inFlight": q.in_flight,
            "arrivalRate": q.arrival_rate,
            "completionRate": q.completion_rate,
            "serviceSeconds": q.service_seconds,
            "serviceScv": q.service_scv,
            "executingPerPod": q.executing_per_pod,
        }
        # The preset stays: it says which input the policy may leave out (an arrival rate, without
        # drainSeconds).
        w_doc["metrics"] = {
            **w_doc.get("metrics", {}),
            **{k: scoped(f"{path}.metrics.{k}", v) for k, v in filled.items() if v is not None},
        }
    if spec.read_replicas is not None:
        rr_doc = spec_doc["readReplicas"]
        behavior("readReplicas", rr_doc, spec.read_replicas, "readReplicas.behavior")
        rr_doc["metric"]["query"] = scoped("readReplicas.metric.query", rr_doc["metric"]["query"])
    model.parse_spec(spec_doc)
    out.setdefault("metadata", {}).setdefault("annotations", {})["scalekeeper.dev/demo"] = (
        f"windows, periods and cooldowns of {EXAMPLE_POLICY.name} divided by {factor:g}; "
        f"queries narrowed to namespace {namespace}"
    )
    return result


def rules_text(rules: Mapping[str, Any]) -> str:
    """``50%/15s after 15s``: one direction's rate limits (several: joined by | or &) and its window."""
    pols = []
    for p in rules.get("policies") or []:
        unit = "%" if p["type"] == "Percent" else (" pod" if p["value"] == 1 else " pods")
        pols.append(f"{p['value']}{unit}/{p['periodSeconds']}s")
    joiner = " & " if rules.get("selectPolicy") == "Min" else " | "
    text = "disabled" if rules.get("selectPolicy") == "Disabled" else joiner.join(pols)
    return f"{text} after {rules.get('stabilizationWindowSeconds', 0)}s"


def describe_shortening(s: Shortening) -> list[str]:
    """One line per target: its rules in the demo, and in brackets the example's (or the HPA defaults')."""
    lines = []
    for tier, (before, after) in s.behaviors.items():
        parts = [
            f"up {rules_text(after['scaleUp'])} ({rules_text(before['scaleUp'])})",
            f"down {rules_text(after['scaleDown'])} ({rules_text(before['scaleDown'])})",
        ]
        if tier in s.cooldowns:
            old, new = s.cooldowns[tier]
            parts.append(f"to zero after {new}s empty ({old}s)")
        lines.append(f"  {tier:<15} " + "; ".join(parts))
    return lines
