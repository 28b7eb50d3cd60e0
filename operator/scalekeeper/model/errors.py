"""Validation errors named by field: the error a cross-field rule raises, and the rendering of pydantic's
errors as full field paths (``spec.workers[1].maxReplicas: <message>``)."""

from __future__ import annotations

from pydantic import ValidationError
from pydantic_core import PydanticCustomError


def cross_field_error(field: str, message: str) -> PydanticCustomError:
    """An error for a rule spanning fields; ``field`` is relative to the model raising it.

    The relative field is kept in the error context so :func:`error_paths` can
    name the exact field even though pydantic locates model-level errors at the model.
    """
    return PydanticCustomError("cross_field", message, {"field": field})


def _render_loc(loc: tuple[int | str, ...], field: str, root: str) -> str:
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    if field:
        path += field if field.startswith("[") else f".{field}"
    return path


def error_paths(exc: ValidationError, root: str = "spec") -> list[str]:
    """Full field paths (``spec.workers[1].maxReplicas``) of a validation error, in order."""
    paths = []
    for err in exc.errors():
        ctx = err.get("ctx") or {}
        field = ctx.get("field", "") if err["type"] == "cross_field" else ""
        paths.append(_render_loc(tuple(err["loc"]), str(field), root))
    return paths


def error_messages(exc: ValidationError, root: str = "spec") -> list[str]:
    """One line per error: ``spec.workers[1].maxReplicas: <message>``."""
    return [f"{p}: {e['msg']}" for p, e in zip(error_paths(exc, root), exc.errors(), strict=True)]


class SpecError(ValueError):
    """An invalid ScalingPolicy spec; ``messages`` name each offending field."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages
