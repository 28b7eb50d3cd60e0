"""The pod template a worker may embed: the part of its schema the API server can check, and the same check
in Python for the operator."""

from __future__ import annotations

import re
from typing import Any

from .base import DNS_LABEL_PATTERN

# What the API server can check of an embedded pod template: metadata an object with string labels, a
# spec with at least one container, each named and with an image (a Deployment made from less is refused;
# the operator adds its own labels to these). The rest is the pod's own schema.
POD_TEMPLATE_SCHEMA: dict[str, Any] = {
    "x-kubernetes-preserve-unknown-fields": True,
    "required": ["spec"],
    "properties": {
        "metadata": {
            "type": "object",
            "description": "The pods' metadata.",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "labels": {
                    "type": "object",
                    "description": "The pods' labels.",
                    "additionalProperties": {"type": "string"},
                }
            },
        },
        "spec": {
            "type": "object",
            "description": "The pod's spec.",
            "x-kubernetes-preserve-unknown-fields": True,
            "required": ["containers"],
            "properties": {
                "containers": {
                    "type": "array",
                    "description": "The pod's containers (at least one, each with name and image).",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                        "required": ["name", "image"],
                        "properties": {
                            "name": {
                                "type": "string",
                                "description": "The container's name.",
                                "minLength": 1,
                                "maxLength": 63,
                                "pattern": DNS_LABEL_PATTERN,
                            },
                            "image": {
                                "type": "string",
                                "description": "The container's image.",
                                "minLength": 1,
                            },
                        },
                    },
                }
            },
        },
    },
}


def pod_template_problem(template: dict[str, Any]) -> tuple[str, str] | None:
    """(field below template, why) when the template is not a pod template the API server would take."""
    metadata = template.get("metadata", {})
    if not isinstance(metadata, dict):
        return "metadata", "a pod template's metadata must be an object"
    labels = metadata.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        return "metadata.labels", "a pod template's labels must map names to strings"
    spec = template.get("spec")
    if not isinstance(spec, dict):
        return "spec", "a pod template needs a spec (its containers go in template.spec.containers)"
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return "spec.containers", "a pod template needs at least one container"
    for i, container in enumerate(containers):
        for key in ("name", "image"):
            if (
                not isinstance(container, dict)
                or not isinstance(container.get(key), str)
                or not container[key]
            ):
                return f"spec.containers[{i}].{key}", f"each container needs a {key}"
        name = container["name"]
        if len(name) > 63 or not re.match(DNS_LABEL_PATTERN, name):
            return f"spec.containers[{i}].name", f"a container's name must be a DNS label, got {name!r}"
    return None
