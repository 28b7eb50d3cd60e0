"""The ScalingPolicy custom resource: spec and status as pydantic models.

This package is the single source of truth for the resource's shape. The CRD in
``crds/`` is generated from it by :mod:`scalekeeper.crdgen`, so every bound,
default and description written here is what the API server enforces and what
``kubectl explain`` shows. Cross-field rules are written twice: once as pydantic
validators (used by the operator and the tests) and once as CEL rules attached
through ``json_schema_extra`` (used by the API server); the messages name the
same fields so that both report the same problem the same way.

CEL messages may contain ``{path}``; crdgen replaces it with the schema path of
the object the rule sits on (``spec.web``, ``spec.workers[]`` ...), because one
model (``Behavior``) is used at several places of the spec.

One module per part of the resource: ``base`` (names, bounds, base classes, CEL
helper), ``errors``, ``behavior``, ``forecast``, ``web``, ``pod_template``,
``workers``, ``read_replicas``, ``budget``, ``policy`` (the whole spec) and
``status``. This module re-exports what the rest of the operator uses, so that
callers write ``model.WorkerSpec`` without knowing the module it lives in.
"""

from .base import (
    API_VERSION,
    CRD_NAME,
    DNS_SUBDOMAIN_PATTERN,
    GENERATED_NAME_MAX,
    GROUP,
    KIND,
    LIST_KIND,
    MAX_NAME_LENGTH,
    MAX_QUEUE_LENGTH,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
)
from .behavior import (
    Behavior,
    HPAScalingPolicy,
    HPAScalingRules,
    PolicyType,
    ScaleDownRules,
    ScaleUpRules,
    SelectPolicy,
    default_behavior,
)
from .errors import SpecError, error_messages, error_paths
from .forecast import Forecast
from .policy import Mode, ScalingPolicySpec, parse_spec
from .read_replicas import ReadReplicasSpec
from .status import (
    BottleneckStatus,
    ConditionStatus,
    ConditionType,
    LimitedBy,
    ScalingPolicyStatus,
    TargetStatus,
    Verification,
)
from .web import WebSpec
from .workers import WorkerMetrics, WorkerSpec, generated_name_suffix

__all__ = [
    "API_VERSION",
    "CRD_NAME",
    "DNS_SUBDOMAIN_PATTERN",
    "GENERATED_NAME_MAX",
    "GROUP",
    "KIND",
    "LIST_KIND",
    "MAX_NAME_LENGTH",
    "MAX_QUEUE_LENGTH",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "VERSION",
    "Behavior",
    "BottleneckStatus",
    "ConditionStatus",
    "ConditionType",
    "Forecast",
    "HPAScalingPolicy",
    "HPAScalingRules",
    "LimitedBy",
    "Mode",
    "PolicyType",
    "ReadReplicasSpec",
    "ScaleDownRules",
    "ScaleUpRules",
    "ScalingPolicySpec",
    "ScalingPolicyStatus",
    "SelectPolicy",
    "SpecError",
    "TargetStatus",
    "Verification",
    "WebSpec",
    "WorkerMetrics",
    "WorkerSpec",
    "default_behavior",
    "error_messages",
    "error_paths",
    "generated_name_suffix",
    "parse_spec",
]
