"""What every part of the ScalingPolicy model shares: the resource's names, the bounds and patterns the API
server enforces, the base classes of spec and status, and the helper that attaches CEL rules to a model."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "scalekeeper.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ScalingPolicy"
LIST_KIND = "ScalingPolicyList"
PLURAL = "scalingpolicies"
SINGULAR = "scalingpolicy"
SHORT_NAMES = ("sp",)
CRD_NAME = f"{PLURAL}.{GROUP}"
# Earlier builds (a kopf daemon per policy) put this finalizer on every policy; the operator removes it.
LEGACY_FINALIZER = f"{GROUP}/daemon"

MAX_WORKERS = 50
MAX_POLICIES = 10
# Bounded lengths keep the API server's CEL cost estimate low: string
# comparisons are costed by their maximum length.
MAX_NAME_LENGTH = 253
MAX_QUEUE_LENGTH = 200
MAX_QUERY_LENGTH = 4096

# A DNS-1123 label: a container's name.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# A Deployment's ReplicaSets are named `<deployment>-<10-character hash>`, within the 253 a name may have.
GENERATED_NAME_MAX = MAX_NAME_LENGTH - 11

# A DNS-1123 subdomain, the rule for Deployment and most object names.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
REPLICAS_PATH_PATTERN = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"

# Every count lands in an int32 field somewhere (an HPA's or a Deployment's replicas): no larger one is taken.
INT32_MAX = 2**31 - 1
# An apiVersion: a version, with a DNS-subdomain group before it unless it is the core group's.
API_VERSION_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?v[0-9]+((alpha|beta)[0-9]+)?$"
)
# At least one character that is not white space: a query of blanks is no query. Spelled out rather than
# \S, whose meaning differs between the API server's regular expressions (Go's) and pydantic's (Rust's).
NOT_BLANK_PATTERN = r"[^\t\n\f\r ]"


def cel(*rules: tuple[str, str] | tuple[str, str, str] | tuple[str, str, str, str]) -> dict[str, Any]:
    """Build the ``json_schema_extra`` that carries CEL rules for crdgen.

    Each rule is ``(expression, message[, fieldPath[, reason]])``. The fieldPath
    names the same field as the matching pydantic validator's ``cross_field_error``,
    so the API server and the operator point at the same field.
    """
    out: list[dict[str, str]] = []
    for rule in rules:
        entry = {"rule": rule[0], "message": rule[1]}
        if len(rule) >= 3:
            entry["fieldPath"] = rule[2]
            entry["reason"] = rule[3] if len(rule) == 4 else "FieldValueInvalid"
        out.append(entry)
    return {"x-kubernetes-validations": out}


class _Spec(BaseModel):
    # extra="forbid" mirrors the API server's strict field validation: a typo is an error, not a no-op.
    # Frozen, so that every target omitting a part shares one default instance of it (behavior.py): at
    # thousands of policies the defaults' copies were most of a parsed spec's memory.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class _Status(BaseModel):
    # The operator reads back status written by older or newer versions of itself.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


DeploymentName = Annotated[
    str,
    Field(min_length=1, max_length=MAX_NAME_LENGTH, pattern=DNS_SUBDOMAIN_PATTERN),
]
PromQL = Annotated[str, Field(min_length=1, max_length=MAX_QUERY_LENGTH, pattern=NOT_BLANK_PATTERN)]
