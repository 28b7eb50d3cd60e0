"""Owner references: what the operator creates belongs to its ScalingPolicy and goes when it goes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..model import API_VERSION, KIND


@dataclass(frozen=True)
class OwnerRef:
    namespace: str
    name: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def is_owned_by(obj: dict[str, Any], owner: OwnerRef) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == owner.uid for r in refs)
