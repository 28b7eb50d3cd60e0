"""Server-side dry-runs: would the API server take this object as the operator will write it? Sent as a
server-side apply with `dryRun=All`, so the answer comes from the real admission chain (schemas, defaults,
validation, admission webhooks that declare they have no side effects) and nothing is stored."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

FIELD_MANAGER = "scalekeeper"

# (method, path, body) -> None; ApiException when the API server refuses.
DryRunCall = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True)
class Verdict:
    """None for both: accepted. `refused`: what the API server said, with the field. `unverified`: it
    could not tell (an admission webhook that cannot serve dry runs, a timeout): not a refusal."""

    refused: str | None = None
    unverified: str | None = None


def dry_run_call(api: client.ApiClient) -> DryRunCall:
    def call(path: str, body: dict[str, Any]) -> None:
        query = [("dryRun", "All"), ("fieldManager", FIELD_MANAGER), ("force", "true")]
        headers = {"Accept": "application/json", "Content-Type": "application/apply-patch+yaml"}
        method, url, header_params, serialized, post = api.param_serialize(
            method="PATCH",
            resource_path=path,
            query_params=query,
            header_params=headers,
            body=json.dumps(body),
            auth_settings=["BearerToken"],
        )
        response = api.call_api(method, url, header_params=header_params, body=serialized, post_params=post)
        response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)

    return call


def object_path(obj: dict[str, Any], plural: str) -> str:
    group_version = obj["apiVersion"]
    prefix = f"/api/{group_version}" if "/" not in group_version else f"/apis/{group_version}"
    meta = obj["metadata"]
    return f"{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"


def verdict(call: DryRunCall, obj: dict[str, Any], plural: str) -> Verdict:
    """The API server's answer to `obj` applied as the operator will write it, nothing stored."""
    what = f"{obj['kind']} {obj['metadata']['name']}"
    try:
        call(object_path(obj, plural), obj)
    except ApiException as exc:
        body = _json(exc.body)
        message = str(body.get("message") or exc.reason)
        # The server could not tell: busy or failing, an admission webhook that cannot serve dry runs
        # (no sideEffects: None), no right to dry-run it, no namespace yet. Not a refusal of the spec.
        cannot_tell = exc.status in (401, 403, 404, 429) or (exc.status or 0) >= 500
        if cannot_tell or (exc.status == 400 and "dry run" in message.lower()):
            return Verdict(unverified=f"{what}: not verified ({exc.status}: {message})")
        return Verdict(refused=f"the API server refuses {what}: {refusal(exc)}")
    return Verdict()


def refusal(exc: ApiException) -> str:
    """What the API server said of a refused write: each field with its message, else its message, else
    the HTTP reason phrase."""
    body = _json(exc.body)
    causes = (body.get("details") or {}).get("causes") or []
    fields = "; ".join(f"{c.get('field', '')}: {c.get('message', '')}".strip(": ") for c in causes)
    return fields or str(body.get("message") or f"{exc.status} {exc.reason}")


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
