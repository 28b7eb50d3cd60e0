"""The tiers a policy sizes, one module each, registered here in the order the status lists them."""

from __future__ import annotations

from .. import model
from ..kube.owners import OwnerRef
from .base import Tier as Tier
from .read_replicas import ReadReplicasTier
from .web import WebTier
from .workers import WorkerTier


def tiers_of(spec: model.ScalingPolicySpec, owner: OwnerRef) -> list[Tier]:
    """Every tier the spec names, for the policy `owner`: web, one per worker queue, read replicas."""
    tiers: list[Tier] = []
    if spec.web is not None:
        tiers.append(WebTier(owner, spec.web))
    tiers += [WorkerTier(owner, worker) for worker in spec.workers or []]
    if spec.read_replicas is not None:
        tiers.append(ReadReplicasTier(owner, spec.read_replicas))
    return tiers
