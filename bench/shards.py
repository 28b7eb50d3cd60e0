"""Sharded replicas on the kind cluster: how long a SIGKILLed replica's policies wait for a new server, how
many policies a join moves, and how fast a stopping replica hands its policies over.

Local operator processes in a group of their own (a member Lease each in `default`) serve the policies of
one namespace: `--policies` read-replica policies on Deployments whose pods never run (a node selector no
node has), each sized from a real Prometheus series. Figures, printed and drawn in out/bench-shards.png:
- failover: SIGKILL of the replica serving the most; per policy of its, the seconds until another replica
  serves it (`status.servedBy`) and has decided it again (its log's decision line). Aim: the Lease
  duration + one interval (the takeover waits the duration plus the API timeout on purpose);
- join: a replica more; the fraction of policies that moved (aim: at most 1/N + 10 %), all to it;
- leave: SIGTERM of one; the seconds until another serves each of its policies (no Lease to wait out);
- with `--upgrade-from REV` (a commit of the active/passive releases, e.g. 407a6de): that release's code,
  run from `git archive`, leads and sizes the policies first; the members start beside it and must serve
  nothing while it holds its leader Lease; it is stopped (SIGTERM), and the seconds until the members serve
  every policy are measured, with the workloads' writers read from their managedFields.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kubernetes import client, config

from bench.common import (
    LOGS,
    ROOT,
    apply_policy_crd,
    cluster_env,
    delete_lease,
    free_port,
    operator_env,
    percentile,
    reproduce_command,
    sigterm_as_interrupt,
    start_operator_process,
    stop_process,
    wait_for,
)
from scalekeeper.cli import Parser
from scalekeeper.engine.ring import HashRing

GROUP, VERSION, PLURAL = "scalekeeper.dev", "v1alpha1", "scalingpolicies"
LEASE_NAMESPACE = "default"
# A real series with a steady value (one Prometheus): every policy wants two replicas (its Deployment starts
# at one, so whoever serves it first writes once).
QUERY = "sum(prometheus_build_info)"
OUT = ROOT / "out"


@dataclass
class Replica:
    identity: str
    process: subprocess.Popen[bytes]


@dataclass
class Run:
    namespace: str
    group: str
    env: dict[str, str]
    replicas: dict[str, Replica] = field(default_factory=dict)

    def start(self, identity: str) -> None:
        env = {**self.env, "POD_NAME": identity, "SCALEKEEPER_METRICS_PORT": str(free_port())}
        process = start_operator_process(env, LOGS / f"bench-shards-{identity}.log")
        self.replicas[identity] = Replica(identity, process)


def policy_body(i: int, interval: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ScalingPolicy",
        "metadata": {"name": f"p{i:04d}"},
        "spec": {
            "intervalSeconds": interval,
            "readReplicas": {
                "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"db{i:04d}"},
                "minReplicas": 1,
                "maxReplicas": 3,
                "metric": {"query": QUERY, "perReplica": 0.5},
            },
        },
    }


def deployment_body(i: int, image: str) -> dict[str, Any]:
    labels = {"app": f"db{i:04d}"}
    return {
        "metadata": {"name": f"db{i:04d}"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"bench-shards": "no-such-node"},
                    "containers": [{"name": "main", "image": image}],
                },
            },
        },
    }


def policies(objects: client.CustomObjectsApi, ns: str) -> dict[str, dict[str, Any]]:
    items = objects.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
    return {p["metadata"]["uid"]: p for p in items}


def served_by(policy: dict[str, Any]) -> str:
    return str((policy.get("status") or {}).get("servedBy") or "")


def settled(objects: client.CustomObjectsApi, ns: str, members: set[str]) -> bool:
    ring = HashRing(members)
    return all(served_by(p) == ring.owner(uid) for uid, p in policies(objects, ns).items())


def takeover_seconds(
    run: Run, objects: client.CustomObjectsApi, names: set[str], since: float, timeout: float, gone: str
) -> list[float]:
    """Per policy named in `names`: seconds from `since` (wall clock) until another replica has decided it
    (its first `decision` log line after `since`, every cycle logging one) and serves it (status.servedBy)."""
    deadline = time.monotonic() + timeout
    while True:
        first = first_decisions(run, gone, since)
        served = {
            p["metadata"]["name"] for p in policies(objects, run.namespace).values() if served_by(p) != gone
        }
        done = {name: first[name] - since for name in names if name in first and name in served}
        if len(done) == len(names):
            return sorted(done.values())
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(names) - len(done)} policies of {gone} not decided again in {timeout:.0f} s"
            )
        time.sleep(1)


def first_decisions(run: Run, gone: str, since: float) -> dict[str, float]:
    """Policy name -> the time of its first decision after `since` by a replica other than `gone`."""
    first: dict[str, float] = {}
    for identity in run.replicas:
        if identity == gone:
            continue
        for line in (LOGS / f"bench-shards-{identity}.log").read_text(errors="replace").splitlines():
            if '"message": "decision"' not in line:
                continue
            entry = json.loads(line)
            at = datetime.fromisoformat(entry["timestamp"]).timestamp()
            name = entry["policy"].rsplit("/", 1)[1]
            if at >= since and at < first.get(name, math.inf):
                first[name] = at
    return first


def replicas_owners(apps: client.AppsV1Api, ns: str) -> dict[str, int]:
    """How many of the namespace's Deployments each field manager last set the replicas of (managedFields
    keep no time for a /scale write: who, not when)."""
    owners: dict[str, int] = {}
    for d in apps.list_namespaced_deployment(ns).items:
        for f in d.metadata.managed_fields or []:
            if "f:replicas" in ((f.fields_v1 or {}).get("f:spec") or {}):
                owners[f.manager] = owners.get(f.manager, 0) + 1
    return owners


def upgrade(
    args: argparse.Namespace, run: Run, objects: client.CustomObjectsApi, apps: client.AppsV1Api
) -> dict[str, Any]:
    """The active/passive release leads first; the members start beside it; it stops; they take over."""
    ns, old = run.namespace, f"{run.namespace}-old"
    code = Path(tempfile.mkdtemp(prefix="bench-shards-old-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", args.upgrade_from, "operator"], capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(code)], input=archive.stdout, check=True)
    env = {**run.env, "POD_NAME": old, "SCALEKEEPER_METRICS_PORT": "0", "PYTHONPATH": str(code / "operator")}
    leader = start_operator_process(env, LOGS / f"bench-shards-{old}.log")
    wait_for("the old release sizing every workload", lambda: sizes(apps, ns) == {2}, timeout=300)
    members = {f"{ns}-{k}" for k in range(args.replicas)}
    for identity in sorted(members):
        run.start(identity)
    # Two renewals of theirs: listed, and would have claimed by now without the old leader's Lease.
    time.sleep(2 * args.lease_seconds / 3 + 5)
    claimed = [p["metadata"]["name"] for p in policies(objects, ns).values() if served_by(p)]
    stopped_at = time.time()
    stop_process(leader, timeout=30)
    wait_for("the members serving every policy", lambda: settled(objects, ns, members), timeout=300)
    return {
        "from": args.upgrade_from,
        "claimed_beside_the_leader": claimed,
        "seconds_to_served": time.time() - stopped_at,
        "replicas_set_by": replicas_owners(apps, ns),
    }


def sizes(apps: client.AppsV1Api, ns: str) -> set[int]:
    return {d.spec.replicas for d in apps.list_namespaced_deployment(ns).items}


def measure(
    args: argparse.Namespace, run: Run, objects: client.CustomObjectsApi, apps: client.AppsV1Api
) -> dict[str, Any]:
    ns = run.namespace
    members = {f"{ns}-{k}" for k in range(args.replicas)}
    figures: dict[str, Any] = {}
    started = time.monotonic()
    if args.upgrade_from:
        figures["upgrade"] = upgrade(args, run, objects, apps)
    else:
        for identity in sorted(members):
            run.start(identity)
    wait_for("every policy served by its ring owner", lambda: settled(objects, ns, members), timeout=300)
    figures["settle_seconds"] = time.monotonic() - started

    owners = [served_by(p) for p in policies(objects, ns).values()]
    killed = max(sorted(members), key=owners.count)
    theirs = {p["metadata"]["name"] for p in policies(objects, ns).values() if served_by(p) == killed}
    killed_at = time.time()
    run.replicas[killed].process.send_signal(signal.SIGKILL)
    members.discard(killed)
    figures["failover"] = takeover_seconds(run, objects, theirs, killed_at, 180, killed)
    wait_for("the survivors settled", lambda: settled(objects, ns, members), timeout=120)

    before = {uid: served_by(p) for uid, p in policies(objects, ns).items()}
    joined = f"{ns}-{args.replicas}"
    joined_at = time.monotonic()
    run.start(joined)
    members.add(joined)
    wait_for("the joined replica serving its share", lambda: settled(objects, ns, members), timeout=180)
    after = {uid: served_by(p) for uid, p in policies(objects, ns).items()}
    moved = [uid for uid in before if before[uid] != after[uid]]
    figures["join"] = {
        "members_after": len(members),
        "moved_fraction": len(moved) / len(before),
        "all_to_the_newcomer": all(after[uid] == joined for uid in moved),
        "settle_seconds": time.monotonic() - joined_at,
    }

    leaving = sorted(members - {joined})[0]
    theirs = {p["metadata"]["name"] for p in policies(objects, ns).values() if served_by(p) == leaving}
    left_at = time.time()
    stop_process(run.replicas[leaving].process, timeout=30)
    members.discard(leaving)
    figures["leave"] = takeover_seconds(run, objects, theirs, left_at, 120, leaving)
    return figures


def report(args: argparse.Namespace, figures: dict[str, Any], command: str) -> None:
    fail, leave, join = figures["failover"], figures["leave"], figures["join"]
    aim_failover = args.lease_seconds + args.interval
    aim_moved = 1 / join["members_after"] + 0.10
    print(
        f"\nbench.shards: {args.policies} policies, {args.replicas} replicas, "
        f"intervalSeconds {args.interval}, Lease {args.lease_seconds} s, API timeout {args.api_timeout} s; "
        f"all served after {figures['settle_seconds']:.1f} s"
    )
    print("| measure | p50 | p95 | max | aim |")
    print("| --- | --- | --- | --- | --- |")
    for name, values, aim in (
        (f"failover: SIGKILL, {len(fail)} policies served and decided again", fail, f"<= {aim_failover} s"),
        (f"leave: SIGTERM, {len(leave)} policies served again", leave, "no Lease wait"),
    ):
        p50, p95 = percentile(values, 0.50), percentile(values, 0.95)
        print(f"| {name} | {p50:.1f} s | {p95:.1f} s | {max(values):.1f} s | {aim} |")
    print(
        f"| join: {join['members_after'] - 1} -> {join['members_after']} replicas, policies moved | "
        f"{join['moved_fraction']:.1%} (all to the newcomer: {join['all_to_the_newcomer']}) | | | "
        f"<= {aim_moved:.1%} |"
    )
    if "upgrade" in figures:
        up = figures["upgrade"]
        print(
            f"upgrade from {up['from']}: claimed beside the old leader: {up['claimed_beside_the_leader']}; "
            f"all served {up['seconds_to_served']:.1f} s after it was stopped; replicas last set by: "
            f"{up['replicas_set_by']}"
        )
    print(f"reproduce: {command}")
    plot(figures, aim_failover, OUT / "bench-shards.png")


def plot(figures: dict[str, Any], aim_failover: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    for name, values in (("failover (SIGKILL)", figures["failover"]), ("leave (SIGTERM)", figures["leave"])):
        ax.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post", label=name)
    ax.axvline(aim_failover, linestyle="--", color="grey", label=f"aim {aim_failover:.0f} s")
    ax.set_xlabel("seconds until served and decided again")
    ax.set_ylabel("fraction of the replica's policies")
    join = figures["join"]
    ax.set_title(f"join: {join['moved_fraction']:.0%} of the policies moved to the newcomer")
    ax.legend()
    path.parent.mkdir(exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    print(f"wrote {path.relative_to(ROOT)}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = Parser(prog="python -m bench.shards", description=__doc__.split("\n")[0])
    parser.add_argument("--policies", type=int, default=60)
    parser.add_argument("--replicas", type=int, default=3, help="replicas before the join (>= 2)")
    parser.add_argument("--interval", type=int, default=5, help="the policies' intervalSeconds")
    parser.add_argument("--lease-seconds", type=int, default=15)
    parser.add_argument("--api-timeout", type=int, default=5)
    parser.add_argument("--upgrade-from", help="a commit of the active/passive releases to upgrade from")
    args = parser.parse_args(argv)
    if args.replicas < 2 or args.policies < 1:
        parser.error("--replicas must be at least 2 and --policies at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cluster = cluster_env()
    # The pods never run (no node matches): any image the registry holds names them.
    kubeconfig, image = cluster["KUBECONFIG"], f"{cluster['SCALEKEEPER_REGISTRY']}/scalekeeper:dev"
    config.load_kube_config(kubeconfig)
    api = client.ApiClient()
    core, apps, objects = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
    ns = f"bench-shards-{uuid.uuid4().hex[:6]}"
    run = Run(
        ns,
        f"lease-{ns}",
        operator_env(
            kubeconfig=kubeconfig,
            prometheus=cluster["PROMETHEUS_URL"],
            namespaces=ns,
            lease=f"lease-{ns}",
            lease_namespace=LEASE_NAMESPACE,
            identity=ns,
            extra={
                "SCALEKEEPER_LEASE_SECONDS": str(args.lease_seconds),
                "SCALEKEEPER_API_TIMEOUT_SECONDS": str(args.api_timeout),
                "PYTHONPATH": str(ROOT / "operator"),
                # A decision line every cycle: when each policy was decided again is read from them.
                "SCALEKEEPER_LOG_DECISIONS": "all",
            },
        ),
    )
    apply_policy_crd(kubeconfig)
    core.create_namespace({"metadata": {"name": ns}})
    try:
        with sigterm_as_interrupt():
            for i in range(args.policies):
                apps.create_namespaced_deployment(ns, deployment_body(i, image))
                objects.create_namespaced_custom_object(
                    GROUP, VERSION, ns, PLURAL, policy_body(i, args.interval)
                )
            figures = measure(args, run, objects, apps)
    finally:
        for replica in run.replicas.values():
            stop_process(replica.process, timeout=30)
        core.delete_namespace(ns)
        delete_lease(kubeconfig, LEASE_NAMESPACE, run.group)
    report(args, figures, reproduce_command("bench.shards", args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
