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
from bench.scale.measure import SizeResult, idle_rss_mb, measure_size, say
from bench.scale.report import plot, plot_prometheus, print_report
from bench.scale.settings import (
    FULL,
    GROUP,
    LEASE_NAME,
    LEASE_NAMESPACE,
    OUT,
    PLURAL,
    SHAPES,
    Settings,
    parse_args,
)


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
        # Runs before the operator batched reads across policies: one request per policy per cycle.
        "batching": "off",
        "replicas": 1,
        "per_replica": [],
        "code": "",
        "machine_cores": {},
        "machine_idle_cores": {},
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
        batching=tuple(dict.fromkeys(r.batching for r in results)),
        replicas=tuple(dict.fromkeys(r.replicas for r in results)),
        # Runs before light fleets existed measured the full one.
        shape=SHAPES[saved.get("fleet", FULL.name)],
    )
    print_report(results, ran, saved["machine"], saved.get("idle_rss_mb", float("nan")))
    return 0


def save(settings: Settings, machine: str, idle: float, results: list[SizeResult]) -> None:
    """The run so far, written after each measure: a fleet's cleanup (minutes at thousands of policies on a
    busy cluster) never holds figures already taken, and an interrupted run keeps them."""
    OUT.mkdir(exist_ok=True)
    (OUT / "bench-scale.json").write_text(
        json.dumps(
            {
                "machine": machine,
                "command": settings.command,
                "operator_env": settings.operator_env,
                "window_cycles": settings.window_cycles,
                "fleet": settings.shape.name,
                "idle_rss_mb": idle,
                "results": [asdict(r) for r in results],
            },
            indent=1,
        )
    )


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    if settings.report_from:
        return report_saved(Path(settings.report_from), settings)
    api, apis = make_apis(settings.kubeconfig, settings.concurrency + 2)
    check_crd(api)
    machine = describe_machine(api)
    results: list[SizeResult] = []
    idle = float("nan")

    def measured(r: SizeResult) -> None:
        results.append(r)
        save(settings, machine, idle, results)
        say(
            f"{r.policies} policies, batching {r.batching}, {r.replicas} replica(s): "
            f"{r.cpu_per_policy_cycle_ms:.2f} ms CPU per policy cycle, {r.cores_busy:.2f} cores, "
            f"RSS {r.rss_end_mb:.0f} MB (out/bench-scale.json)"
        )

    try:
        with sigterm_as_interrupt():
            idle = idle_rss_mb(settings)
            say(f"a replica seeing no policy: {idle:.0f} MB resident")
            for size in settings.sizes:
                for mode in settings.batching:
                    last = size == settings.sizes[-1] and mode == settings.batching[0]
                    measure_size(settings, apis, size, measured, profile=last, batching=mode)
    finally:
        delete_lease(settings.kubeconfig, LEASE_NAMESPACE, LEASE_NAME)
    print_report(results, settings, machine, idle)
    if len(settings.sizes) > 1:
        plot([r for r in results if r.batching == settings.batching[0]], OUT / "bench-scale.png")
    plot_prometheus(results, OUT / "bench-scale-prometheus.png")
    return 0
