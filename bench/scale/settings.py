"""bench.scale's settings: the command line, the cluster it runs on, the fixed names and sizes of a run."""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from kubernetes.client.rest import ApiException

from bench import scale as package
from bench.common import ROOT, cluster_env
from scalekeeper.cli import Parser
from scalekeeper.config import MAX_WORKERS

OUT = ROOT / "out"
# What a wait's check may raise and still be asked again: the API server or Prometheus busy or unreachable.
API_ERRORS = (ApiException, OSError)

BATCH_WINDOW = "SCALEKEEPER_PROMETHEUS_BATCH_WINDOW_SECONDS"
GROUP, VERSION, PLURAL = "scalekeeper.dev", "v1alpha1", "scalingpolicies"
NAMESPACE_PREFIX = "bench-scale-"
LEASE_NAME, LEASE_NAMESPACE = "bench-scale-leader", "default"
QUEUES = 3


@dataclass(frozen=True)
class FleetShape:
    """What each policy of a fleet sizes: its targets (kind and name suffix), one Prometheus series per
    metric, and the tier whose decision line stands for the policy's cycle in the operator's log."""

    name: str
    targets: tuple[tuple[str, str], ...]
    metrics: tuple[str, ...]
    cycle_target: str
    description: str


FULL = FleetShape(
    "full",
    targets=(
        ("Deployment", "web"),
        ("Deployment", "read"),
        *(("Deployment", f"worker-{q}") for q in range(QUEUES)),
    ),
    # web's request rate, the read load, waiting and in-flight per queue
    metrics=("web", "read", *(f"{m}-q{q}" for q in range(QUEUES) for m in ("waiting", "inflight"))),
    cycle_target="web",
    description=f"web (own Deployment + owned HPA) + {QUEUES} worker queues + read replicas, all Deployments",
)
# The largest fleets: one target a policy, a StatefulSet at 0 replicas (no ReplicaSet, no HPA, no pod; the
# operator's informer holds it, so a cycle reads no object) and one series.
LIGHT = FleetShape(
    "light",
    targets=(("StatefulSet", "read"),),
    metrics=("read",),
    cycle_target="readReplicas",
    description="read replicas only, on a StatefulSet",
)
SHAPES = {shape.name: shape for shape in (FULL, LIGHT)}


@dataclass(frozen=True)
class Settings:
    sizes: tuple[int, ...]
    namespaces: int
    interval: int
    window_cycles: int
    qps: float
    concurrency: int
    profile_seconds: int
    kubeconfig: str
    prometheus: str
    image: str
    operator_env: dict[str, str]
    command: str
    report_from: str | None = None
    # "on": the operator's default batching of Prometheus reads across policies; "off": one request per
    # policy per cycle (its batch window at 0). Each mode is measured on a fleet of its own.
    batching: tuple[str, ...] = ("on",)
    # Operator replicas sharing the policies, each count measured in turn on the same fleet.
    replicas: tuple[int, ...] = (1,)
    shape: FleetShape = FULL
    # Checkouts whose operator is measured, each in turn on the same fleet (after each replica count):
    # an A/B of two commits on the same objects, which fleets of their own (minutes apart, a namespace
    # deletion under way) do not give.
    code: tuple[Path, ...] = (ROOT,)

    @property
    def cycle_threads(self) -> int:
        """Cycles one replica runs at once: its SCALEKEEPER_MAX_WORKERS (the operator's startup sizes the
        loop's default executor, which runs every cycle, by it)."""
        return MAX_WORKERS.read(self.operator_env)

    def for_batching(self, mode: str) -> Settings:
        """These settings with the operator's batching `mode`."""
        if mode == "on":
            return self
        return dataclasses.replace(self, operator_env={**self.operator_env, BATCH_WINDOW: "0"})


def code_version(checkout: Path) -> str:
    """The checkout's commit, `+` when its tree has changes; the folder's name outside git."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(checkout), *args], capture_output=True, text=True, check=True)
        return done.stdout.strip()

    try:
        head, dirty = (
            git("rev-parse", "--short", "HEAD"),
            git("status", "--porcelain", "--untracked-files=no"),
        )
    except (OSError, subprocess.CalledProcessError):
        return checkout.name
    return head + ("+" if dirty else "")


def parse_args(argv: list[str] | None = None) -> Settings:
    parser = Parser(prog="python -m bench.scale", description=(package.__doc__ or "").split("\n")[0])
    parser.add_argument(
        "--sizes", default="100,300", help="policy counts, comma-separated (issue: 100,1000,3000)"
    )
    parser.add_argument("--namespaces", type=int, default=5, help="namespaces the policies are spread over")
    parser.add_argument("--interval", type=int, default=15, help="the policies' intervalSeconds")
    parser.add_argument("--window-cycles", type=int, default=4, help="steady window, in intervals (>= 2)")
    parser.add_argument("--qps", type=float, default=50.0, help="object creations per second, at most")
    parser.add_argument("--concurrency", type=int, default=8, help="object creations in flight")
    parser.add_argument(
        "--profile-seconds", type=int, default=60, help="py-spy window at the largest size (0: none)"
    )
    parser.add_argument(
        "--report-from",
        metavar="JSON",
        help="print the report of a saved run (out/bench-scale.json) and exit",
    )
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the operator (e.g. SCALEKEEPER_MAX_WORKERS=16); repeatable",
    )
    parser.add_argument(
        "--batching",
        choices=("on", "off", "both"),
        default="on",
        help="the operator's batching of Prometheus reads across policies; both: each size on, then off",
    )
    parser.add_argument(
        "--replicas",
        default="1",
        help="operator replica counts sharing the policies, comma-separated, each measured in turn on the "
        "same fleet (issue: 1,3)",
    )
    parser.add_argument(
        "--fleet",
        choices=tuple(SHAPES),
        default=FULL.name,
        help=f"full: {FULL.description}; light: {LIGHT.description} (for the largest fleets)",
    )
    parser.add_argument(
        "--code",
        default=str(ROOT),
        metavar="CHECKOUT[,CHECKOUT...]",
        help="project checkouts whose operator is measured in turn on each fleet, e.g. a `git worktree` of "
        "an older commit beside this one (default: this checkout)",
    )
    args = parser.parse_args(argv)
    try:
        sizes = tuple(sorted({int(s) for s in args.sizes.split(",") if s.strip()}))
        replicas = tuple(dict.fromkeys(int(s) for s in args.replicas.split(",") if s.strip()))
    except ValueError:
        parser.error("--sizes and --replicas take whole numbers, comma-separated")
    if not sizes or min(sizes) < 1 or args.window_cycles < 2 or args.namespaces < 1:
        parser.error("--sizes must be positive, --window-cycles >= 2, --namespaces >= 1")
    if not replicas or min(replicas) < 1:
        parser.error("--replicas must be positive")
    code = tuple(Path(c.strip()).resolve() for c in args.code.split(",") if c.strip())
    not_checkouts = [str(c) for c in code if not (c / "operator" / "scalekeeper" / "__init__.py").is_file()]
    if not code or not_checkouts:
        parser.error(
            f"--code: not a scalekeeper checkout (no operator/scalekeeper): {', '.join(not_checkouts)}"
        )
    cluster = cluster_env()
    return Settings(
        sizes=sizes,
        namespaces=args.namespaces,
        interval=args.interval,
        window_cycles=args.window_cycles,
        qps=args.qps,
        concurrency=args.concurrency,
        profile_seconds=args.profile_seconds,
        kubeconfig=os.environ.get("KUBECONFIG") or cluster["KUBECONFIG"],
        prometheus=cluster.get("PROMETHEUS_URL", "http://127.0.0.1:30090"),
        image=f"{cluster.get('SCALEKEEPER_REGISTRY', 'localhost:5001')}/scalekeeper:dev",
        operator_env=dict(kv.split("=", 1) for kv in args.operator_env),
        command=shlex.join(
            ["PYTHONPATH=operator", sys.executable, "-m", "bench.scale", *(argv or sys.argv[1:])]
        ),
        report_from=args.report_from,
        batching=("on", "off") if args.batching == "both" else (args.batching,),
        replicas=replicas,
        shape=SHAPES[args.fleet],
        code=code,
    )
