"""`scalekeeper check`: is an installed operator up and allowed to do its job? The chart's `helm test` runs
it.

Two checks, each told in one line: the operator answers on its metrics port with its own series, and the
credentials it runs with (in a pod: its ServiceAccount's) can list ScalingPolicies in a namespace it serves.
Exit 0 when both pass, 1 when one fails, 2 on a bad argument.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from functools import partial

from prometheus_client.parser import text_string_to_metric_families

# Series every running operator serves, serving or not (opmetrics.py).
REQUIRED_SERIES = ("scalekeeper_serving", "scalekeeper_policies")


class CheckFailed(RuntimeError):
    pass


def check_metrics(url: str, fetch: Callable[[str], str]) -> str:
    """The operator's metrics at `url`; raises CheckFailed naming what is missing."""
    try:
        text = fetch(url)
    except (urllib.error.URLError, OSError) as exc:
        raise CheckFailed(f"metrics: {url} did not answer ({exc})") from exc
    try:
        names = {family.name for family in text_string_to_metric_families(text)}
    except ValueError as exc:
        raise CheckFailed(f"metrics: {url} answered, but not in the Prometheus text format ({exc})") from exc
    missing = [name for name in REQUIRED_SERIES if name not in names]
    if missing:
        raise CheckFailed(f"metrics: {url} answered without {', '.join(missing)}: not a scalekeeper operator")
    return f"metrics: {url} answers with {len(names)} metric families"


def check_policies(namespace: str, list_policies: Callable[[str], int]) -> str:
    """Whether ScalingPolicies in `namespace` can be listed; raises CheckFailed with the API server's
    answer."""
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException
    from urllib3.exceptions import HTTPError

    what = f"listing ScalingPolicies in namespace {namespace}"
    try:
        count = list_policies(namespace)
    except ApiException as exc:
        raise CheckFailed(f"policies: {what} was refused ({exc.status} {exc.reason})") from exc
    except (ConfigException, HTTPError, OSError) as exc:
        raise CheckFailed(f"policies: {what} failed: no API server reached ({exc})") from exc
    return f"policies: {count} ScalingPolicies readable in namespace {namespace}"


def _fetch(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return str(resp.read().decode())


def _list_policies(namespace: str) -> int:
    from kubernetes import client

    from . import model
    from .runtime import kube_api

    listed = client.CustomObjectsApi(kube_api(1)).list_namespaced_custom_object(
        model.GROUP, model.VERSION, namespace, model.PLURAL, _request_timeout=10
    )
    return len(listed.get("items") or [])


def main(argv: list[str] | None = None) -> int:
    from .cli import Parser

    parser = Parser(prog="scalekeeper check", description=(__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--metrics-url", required=True, help="the operator's metrics, e.g. http://svc:8080/metrics"
    )
    parser.add_argument("--namespace", required=True, help="a namespace the operator serves")
    args = parser.parse_args(argv)
    if not args.metrics_url.startswith(("http://", "https://")):
        parser.error(f"--metrics-url must be an http:// or https:// URL, not {args.metrics_url!r}")
    checks: list[Callable[[], str]] = [
        partial(check_metrics, args.metrics_url, _fetch),
        partial(check_policies, args.namespace, _list_policies),
    ]
    failed = False
    for check in checks:
        try:
            print(f"ok {check()}")
        except CheckFailed as exc:
            print(f"FAILED {exc}", file=sys.stderr)
            failed = True
    return 1 if failed else 0
