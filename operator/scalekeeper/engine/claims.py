"""Which policy sizes a workload that several policies name: the oldest one, and only it.

Two autoscalers writing one replica count fight: each undoes the other every cycle. The HPA controller
answers with `AmbiguousSelector` and stops; scalekeeper does the same per target, but keeps a winner so
the workload is still sized: the policy created first (then the lower namespace/name, so every process
that sees the same policies picks the same one, with no writes and no coordination).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, order=True, slots=True)
class PolicyId:
    """A ScalingPolicy as the claim order sees it; the field order is the order of precedence."""

    created: str  # metadata.creationTimestamp, RFC 3339 UTC: sorts as text in time order
    namespace: str
    name: str

    def describe(self) -> str:
        return f"{self.namespace}/{self.name}"


def target_key(api_version: str, kind: str, namespace: str, name: str) -> str:
    """One workload whatever spelling names it: the version is left out (apps/v1 and apps/v1beta2 name
    the same Deployment), the group and kind are compared without case."""
    group = api_version.rpartition("/")[0].lower()
    return f"{group}/{kind.lower()}/{namespace}/{name}"


def contested(
    me: PolicyId,
    my_targets: Mapping[str, str],
    claimants: Mapping[str, Iterable[PolicyId]],
) -> dict[str, PolicyId]:
    """For each of my targets (target name -> target key) that an older policy also names: that policy.

    `claimants` maps a target key to every policy naming it (me included or not). A target absent from
    the result is mine to size.
    """
    out: dict[str, PolicyId] = {}
    for name, key in my_targets.items():
        first = min((me, *claimants.get(key, ())))
        if first != me:
            out[name] = first
    return out
