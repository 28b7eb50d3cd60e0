"""bench.scale's run: every size in turn, then the report (or only the report of a saved run)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from bench.common import delete_lease, describe_machine, sigterm_as_interrupt
from bench.scale.fleet import Apis
from bench.scale.measure import SizeResult, measure_size, say
from bench.scale.report import plot, print_report
from bench.scale.settings import GROUP, LEASE_NAME, LEASE_NAMESPACE, OUT, PLURAL, Settings, parse_args


def make_apis(kubeconfig: str, pool: int) -> tuple[client.ApiClient, Apis]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    cfg.connection_pool_maxsize = pool
    api = client.ApiClient(cfg)
    return api, Apis(client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api))


def check_crd(api: client.ApiClient) -> None:
    try:
        client.ApiextensionsV1Api(api).read_custom_resource_definition(f"{PLURAL}.{GROUP}")
    except ApiException as exc:
        raise SystemExit(
            f"the ScalingPolicy CRD is not installed ({exc.reason}); make cluster-up first"
        ) from exc


def saved_result(raw: dict[str, Any]) -> SizeResult:
    """A SizeResult from JSON written by an older version of this script: what it lacks is unknown (nan)."""
    defaults: dict[str, Any] = {
        "interval": 15,
        "problems": {},
        "events": {},
        "status_causes": {},
        "profile": [],
    }
    known = {f.name for f in dataclasses.fields(SizeResult)}
    missing = {name: defaults.get(name, float("nan")) for name in known - raw.keys()}
    return SizeResult(**{k: v for k, v in raw.items() if k in known}, **missing)


def report_saved(path: Path, settings: Settings) -> int:
    """The report again from a run's JSON (after the report's code changed, or to compare runs)."""
    saved = json.loads(path.read_text())
    results = [saved_result(r) for r in saved["results"]]
    ran = dataclasses.replace(
        settings,
        command=saved["command"],
        operator_env=saved.get("operator_env", {}),
        interval=results[0].interval,
        window_cycles=saved.get("window_cycles", 4),
    )
    print_report(results, ran, saved["machine"])
    return 0


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    if settings.report_from:
        return report_saved(Path(settings.report_from), settings)
    api, apis = make_apis(settings.kubeconfig, settings.concurrency + 2)
    check_crd(api)
    machine = describe_machine(api)
    results: list[SizeResult] = []
    try:
        with sigterm_as_interrupt():
            for size in settings.sizes:
                results.append(measure_size(settings, apis, size, profile=size == settings.sizes[-1]))
                say(f"{size} policies: {results[-1].cpu_per_policy_cycle_ms:.2f} ms CPU per policy cycle")
    finally:
        delete_lease(settings.kubeconfig, LEASE_NAMESPACE, LEASE_NAME)
    OUT.mkdir(exist_ok=True)
    (OUT / "bench-scale.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "command": settings.command,
                "operator_env": settings.operator_env,
                "window_cycles": settings.window_cycles,
                "results": [asdict(r) for r in results],
            },
            indent=1,
        )
    )
    print_report(results, settings, machine)
    if len(results) > 1:
        plot(results, OUT / "bench-scale.png")
    return 0
