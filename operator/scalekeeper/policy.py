"""A ScalingPolicy as the operator knows it: its identity, its parsed spec and tiers, and the workloads it
claims (see engine/claims.py for which policy sizes a workload several name)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import model
from .engine.claims import PolicyId, target_key
from .kube.owners import OwnerRef
from .memory import PolicyMemory
from .metrics.prometheus import MetricKey
from .tiers import Tier, tiers_of


@dataclass(frozen=True)
class PolicyObject:
    namespace: str
    name: str
    uid: str
    generation: int
    spec: dict[str, Any]
    status: dict[str, Any]
    created: str = ""

    @property
    def owner(self) -> OwnerRef:
        return OwnerRef(self.namespace, self.name, self.uid)

    @property
    def id(self) -> PolicyId:
        return PolicyId(self.created, self.namespace, self.name)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> PolicyObject:
        meta = body["metadata"]
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            generation=int(meta.get("generation") or 0),
            spec=dict(body.get("spec") or {}),
            status=dict(body.get("status") or {}),
            created=str(meta.get("creationTimestamp") or ""),
        )


@dataclass(frozen=True)
class Parsed:
    """A policy's spec at one generation, its tiers, their batched queries and the workloads they claim."""

    generation: int
    spec: model.ScalingPolicySpec
    tiers: list[Tier]
    queries: dict[MetricKey, str]
    claims: dict[str, str]
    # Targets whose workload an earlier target of the same policy names (see named_twice).
    twice: dict[str, str]


def parsed(policy: PolicyObject, memory: PolicyMemory) -> Parsed:
    """The spec is immutable within a generation, so it is parsed (and its tiers built) once per
    generation; SpecError when it is invalid."""
    known = memory.parsed
    if known is not None and known.generation == policy.generation and policy.generation:
        return known
    spec = model.parse_spec(policy.spec)
    tiers = tiers_of(spec, policy.owner)
    # The CPU and memory queries are not kept here: the cycle builds them for the targets with pods
    # (cycle.queries_to_read).
    queries = {MetricKey(t.name, metric): q for t in tiers for metric, q in t.queries().items()}
    claims = claim_keys(tiers)
    memory.parsed = Parsed(policy.generation, spec, tiers, queries, claims, named_twice(claims))
    return memory.parsed


def claim_keys(tiers: list[Tier]) -> dict[str, str]:
    """Target name -> the key under which policies claim that workload."""
    out: dict[str, str] = {}
    for tier in tiers:
        ref = tier.target()
        out[tier.name] = target_key(ref.api_version, ref.kind, ref.namespace, ref.name)
    return out


def named_twice(claims: dict[str, str]) -> dict[str, str]:
    """Targets of one policy whose workload an earlier target of the same policy names: target name -> the
    earlier target's. The model refuses the spellings it can see; this catches the rest (a worker's
    Deployment named like another's generated one), so no workload is sized by two tiers in turn."""
    first: dict[str, str] = {}
    out: dict[str, str] = {}
    for name, key in claims.items():
        if key in first:
            out[name] = first[key]
        else:
            first[key] = name
    return out


def _tiers(body: Mapping[str, Any]) -> tuple[PolicyObject, list[Tier]] | None:
    policy = PolicyObject.from_body(body)
    try:
        spec = model.parse_spec(policy.spec)
    except model.SpecError:
        return None
    return policy, tiers_of(spec, policy.owner)


def lookups_of(body: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The operator's index keys one policy's cycle reads: the keys it claims workloads under, and the
    keys of its tiers' objects in the watch indexes. An invalid spec reads none."""
    found = _tiers(body)
    if found is None:
        return [], []
    _, tiers = found
    return list(claim_keys(tiers).values()), [key for tier in tiers for key in tier.watched_keys()]


def claims_of(body: Mapping[str, Any]) -> dict[str, PolicyId]:
    """What a ScalingPolicy claims, for the operator's index: target key -> the policy. An invalid spec
    claims nothing (it sizes nothing either)."""
    found = _tiers(body)
    if found is None:
        return {}
    policy, tiers = found
    claimant = policy.id  # one instance under each key: every replica holds every policy's claims
    return {key: claimant for key in claim_keys(tiers).values()}


def interval_of(body: Mapping[str, Any], memory: PolicyMemory) -> float:
    """Seconds between two cycles of the policy: its spec's, or the model's default for a spec that does
    not parse (its cycle then only reports the error)."""
    try:
        return float(parsed(PolicyObject.from_body(body), memory).spec.interval_seconds)
    except model.SpecError:
        return float(model.ScalingPolicySpec.model_fields["interval_seconds"].default)
