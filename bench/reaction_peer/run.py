"""bench.reaction_peer's run: the namespace, the signal, both targets and sides, the settings in turn."""

from __future__ import annotations

import os
import random
import sys
import time
import uuid
from functools import partial

from kubernetes import client, config

from bench import reaction_peer as package
from bench.common import (
    ROOT,
    apply_object,
    cluster_env,
    delete_prefixed,
    host_line,
    images_env,
    kubectl,
    redis_client,
    wait_for,
    wait_namespace_gone,
)
from bench.reaction import SLEEPER, Replicas, create_deployment, reset_web, start_operator, stop_operator
from bench.reaction_peer.autoscalers import KEDA, SK, hpa_behavior, hpa_sync_period, keda_ready, scaled_object
from bench.reaction_peer.report import plot, report, write_json
from bench.reaction_peer.signals import SIGNALS, setup_gauge, setup_redis_list
from bench.reaction_peer.steps import Bench
from scalekeeper.cli import Parser

LADDER = [40, 50, 60, 70, 80, 90, 100]


def main() -> int:
    parser = Parser(prog="python -m bench.reaction_peer", description=(package.__doc__ or "").split("\n")[0])
    parser.add_argument("--signal", choices=SIGNALS, default="prometheus", help="what the steps move")
    parser.add_argument(
        "--steps", type=int, default=20, help="steps alternating 30/70 for KEDA at its fastest"
    )
    parser.add_argument(
        "--budget", type=float, default=18 * 60, help="seconds for the steps (whole run < 20 min)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the random gaps between steps")
    parser.add_argument(
        "--settings", default="defaults,fastest", help="KEDA settings to run, in order: defaults,fastest"
    )
    parser.add_argument(
        "--namespace-prefix", default="bench-keda-", help="the run's namespace: prefix + random"
    )
    parser.add_argument("--png", default=None, help="default out/reaction-peer[-redis-list].png")
    parser.add_argument("--json", default=None, help="default out/reaction-peer[-redis-list].json")
    args = parser.parse_args()
    started = time.time()
    stem = "reaction-peer" if args.signal == "prometheus" else f"reaction-peer-{args.signal}"
    png = args.png or str(ROOT / "out" / f"{stem}.png")
    json_path = args.json or str(ROOT / "out" / f"{stem}.json")

    env = cluster_env()
    images = images_env()
    kubeconfig, prom = env["KUBECONFIG"], env["PROMETHEUS_URL"]
    image = f"{env['SCALEKEEPER_REGISTRY']}/scalekeeper:dev"
    demo = {
        "DEMO_IMAGE": os.environ.get(
            "SCALEKEEPER_DEMO_IMAGE", f"{env['SCALEKEEPER_REGISTRY']}/scalekeeper-demo:dev"
        ),
        "EXPORTER_IMAGE": os.environ.get(
            "SCALEKEEPER_EXPORTER_IMAGE", f"{env['SCALEKEEPER_REGISTRY']}/scalekeeper-celery-exporter:dev"
        ),
        "REDIS_IMAGE": images.get("REDIS_IMAGE", ""),
    }
    keda_image = keda_ready(kubeconfig)
    sync = hpa_sync_period(kubeconfig)
    machine = host_line()
    timeouts = {"defaults-up": 120.0, "defaults-down": 420.0, "fastest": 60.0}
    api = config.new_client_from_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    ns = f"{args.namespace_prefix}{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    print(f"namespace {ns}; signal {args.signal}; {machine}; HPA sync period {sync[0]:g} s", flush=True)
    operator = None
    try:
        if args.signal in ("prometheus", "web"):
            setup = setup_gauge(apps, kubeconfig, prom, ns, image, web=args.signal == "web")
        else:
            setup = setup_redis_list(kubeconfig, prom, env["REDIS_URL"], ns, demo)
        print(f"signal: {setup.describe}", flush=True)
        create_deployment(apps, ns, SK, image, SLEEPER)
        create_deployment(apps, ns, KEDA, image, SLEEPER)
        watcher = Replicas(apps, ns)
        operator = start_operator(kubeconfig, prom, ns, f"bench-reaction-peer-{args.signal}-operator.log")
        apply_object(kubeconfig, ns, setup.policy)
        settings = args.settings.split(",")
        apply_object(kubeconfig, ns, scaled_object(setup.trigger, fastest=settings[0] == "fastest"))
        bench = Bench(
            kubeconfig,
            setup.signal,
            watcher,
            random.Random(args.seed),
            sync[0],
            started + args.budget,
            rises_only=setup.rises_only,
            lower=partial(reset_web, apps, client.AutoscalingV2Api(api), ns),
        )
        bench.settle(30, 120)
        if "defaults" in settings:
            print("KEDA defaults: scale-up ladder, then one scale-down step", flush=True)
            bench.run("defaults-up", LADDER, timeouts["defaults-up"])
            bench.run("defaults-down", [30], timeouts["defaults-down"])
        if "fastest" in settings:
            apply_object(kubeconfig, ns, scaled_object(setup.trigger, fastest=True))
            wait_for(
                "KEDA's HPA taking the fastest behavior",
                lambda: (
                    hpa_behavior(kubeconfig, ns).get("scaleDown", {}).get("stabilizationWindowSeconds") == 0
                ),
                60,
            )
            # Start the alternation from 30 whatever the default scale-down left.
            bench.settle(30, timeouts["defaults-down"])
            print(f"KEDA fastest: {args.steps} steps alternating 30/70", flush=True)
            bench.run("fastest", [70 if i % 2 == 0 else 30 for i in range(args.steps)], timeouts["fastest"])
        watcher.stop.set()
        report(bench, args.signal, setup, machine, sync, keda_image, timeouts)
        wall = time.time() - started
        meta = {"machine": machine, "hpa_sync": sync, "keda_image": keda_image, "wall_seconds": round(wall)}
        write_json(bench, args.signal, setup, meta, timeouts, json_path)
        plot(bench, args.signal, sync[0], png)
        print(f"wall time {wall:.0f} s")
        return 0
    finally:
        # The ScaledObject and the policy go first, while KEDA and the operator can drop their finalizers.
        wait_gone = True
        try:
            kubectl(
                kubeconfig, "-n", ns, "delete", "scaledobject", KEDA, "--ignore-not-found", "--timeout=60s"
            )
        except RuntimeError as err:
            wait_gone = False
            print(f"deleting the ScaledObject: {err}", file=sys.stderr)
        stop_operator(kubeconfig, ns, operator)
        if args.signal == "redis-list":
            deleted = delete_prefixed(redis_client(env["REDIS_URL"]), f"{ns}:")
            print(f"deleted {deleted} Redis keys of prefix {ns}:")
        core.delete_namespace(ns)
        if wait_gone:
            wait_namespace_gone(core, ns, 120)
