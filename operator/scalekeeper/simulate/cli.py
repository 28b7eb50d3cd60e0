"""`scalekeeper simulate`: the command line.

Every bad policy, trace or flag is refused before anything is simulated, with exit code 2 and one line
on stderr naming the flag, the field or the trace's row. The trace is read as a stream (twice: once to
check it and count its tasks, once to run), so its length is bounded by time, not memory; progress goes to
stderr every few seconds on a long run.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .. import model
from ..cli import Parser
from .oracle import oracle_run
from .report import PLOT_SUFFIXES, LoadCurve, format_table, legend, plot
from .results import RuleSummary, summarize
from .run import select_worker, standard_rules, stream_rules
from .trace import Interval, TraceError, TraceFile, TraceScan
from .workload import DISTRIBUTIONS, ServiceTime, TaskStream

PROGRESS_SECONDS = 5.0
DEFAULT_SERVICE_SECONDS = 1.0
DEFAULT_START_DELAY_SECONDS = 20.0


class InputError(ValueError):
    """A bad flag, policy or trace: one line, naming it."""


@dataclass(frozen=True)
class SimulationDefaults:
    """The policy's `simulation` block: defaults for the flags of the same meaning."""

    service_seconds: float | None = None
    service_distribution: str | None = None
    start_delay_seconds: float | None = None


def load_policy(path: Path) -> tuple[model.ScalingPolicySpec, SimulationDefaults]:
    """The spec (from a ScalingPolicy manifest or a bare spec) and its `simulation` block.

    The simulation block may sit at the top level of the file or, to keep the manifest
    applicable, as YAML in the annotation scalekeeper.dev/simulation.
    """
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {_yaml_problem(exc)}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: expected a ScalingPolicy manifest or spec (a mapping)")
    if "spec" not in doc and "kind" in doc:
        raise InputError(f"{path}: a {doc['kind']} without a spec")
    block: Any = doc.get("simulation")
    where = "simulation"
    metadata = doc.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    key = f"{model.GROUP}/simulation"
    if block is None and isinstance(annotations, dict) and key in annotations:
        where = f"metadata.annotations[{key}]"
        if not isinstance(annotations[key], str):
            raise InputError(f"{path}: {where} must be a string of YAML")
        try:
            block = yaml.safe_load(annotations[key])
        except yaml.YAMLError as exc:
            raise InputError(f"{path}: {where}: not valid YAML: {_yaml_problem(exc)}") from None
    try:
        spec = model.parse_spec(
            doc["spec"] if "spec" in doc else {k: v for k, v in doc.items() if k != "simulation"}
        )
    except model.SpecError as exc:
        raise InputError(f"{path}: {exc}") from None
    return spec, _simulation_defaults(block, f"{path}: {where}")


def _simulation_defaults(block: Any, where: str) -> SimulationDefaults:
    if block is None:
        return SimulationDefaults()
    if not isinstance(block, dict):
        raise InputError(f"{where} must be a mapping")
    known = ("serviceSeconds", "serviceDistribution", "startDelaySeconds")
    for key in block:
        if key not in known:
            raise InputError(f"{where}.{key}: unknown field (known: {', '.join(known)})")
    distribution = block.get("serviceDistribution")
    if "serviceDistribution" in block and distribution not in DISTRIBUTIONS:
        raise InputError(
            f"{where}.serviceDistribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}"
        )
    return SimulationDefaults(
        service_seconds=_field_number(block, "serviceSeconds", where, positive=True),
        service_distribution=distribution,
        start_delay_seconds=_field_number(block, "startDelaySeconds", where, positive=False),
    )


def _field_number(block: dict[str, Any], key: str, where: str, *, positive: bool) -> float | None:
    if key not in block:
        return None
    value = block[key]
    bound = "> 0" if positive else ">= 0"
    if isinstance(value, bool) or not isinstance(value, int | float) or not _within(float(value), positive):
        shown = "null" if value is None else repr(value)
        raise InputError(f"{where}.{key} must be a number of seconds {bound}, got {shown}")
    return float(value)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    return f"{problem} (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else problem


def _within(value: float, positive: bool) -> bool:
    return math.isfinite(value) and (value > 0 if positive else value >= 0)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="scalekeeper simulate",
        description="Replay an arrival trace through the engine and a Celery queue model, and compare "
        "scalekeeper's rules with the HPA defaults and a KEDA-style rule (and, with --oracle, a rule that "
        "knows the future). All times are simulated time.",
    )
    p.add_argument("--policy", required=True, type=Path, help="ScalingPolicy manifest or spec (YAML)")
    p.add_argument(
        "--trace",
        required=True,
        type=Path,
        help="CSV of t_seconds,arrivals rows (times from 0 or epoch seconds; header optional), or one "
        "count per row with --step",
    )
    p.add_argument(
        "--plot", type=Path, help="write a plot of load, replicas and waits here (.png, .svg, .pdf)"
    )
    p.add_argument("--queue", help="the worker queue to simulate (default: the policy's first)")
    p.add_argument("--step", type=float, help="interval length in seconds for a one-column trace")
    p.add_argument("--service-seconds", type=float, help="mean task service time (default: policy, else 1)")
    p.add_argument("--service-distribution", choices=DISTRIBUTIONS, help="default: policy, else exponential")
    p.add_argument("--start-delay", type=float, help="seconds from scale-up to a ready pod (default 20)")
    p.add_argument(
        "--target-wait", type=float, default=30.0, help="waiting-time target in seconds (default 30)"
    )
    p.add_argument(
        "--tail", type=float, default=1800.0, help="seconds simulated after the trace ends (default 1800)"
    )
    p.add_argument("--initial-replicas", type=int, help="replicas at t=0 (default: the worker's minReplicas)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument(
        "--oracle",
        action="store_true",
        help="also run the oracle, the fewest replicas that meet --target-wait knowing the future (holds "
        "every task in memory, and is slow on long traces)",
    )
    p.add_argument(
        "--oracle-interval", type=float, default=15.0, help="the oracle's decision interval (default 15 s)"
    )
    return p


class Progress:
    """A line on stderr at most every PROGRESS_SECONDS, with the time spent so far."""

    def __init__(self, every: float | None = None) -> None:
        self.began = time.monotonic()
        self.every = PROGRESS_SECONDS if every is None else every
        self.next = self.began + self.every

    def due(self) -> bool:
        return time.monotonic() >= self.next

    def say(self, text: str) -> None:
        now = time.monotonic()
        self.next = now + self.every
        print(f"scalekeeper simulate: {text} [{now - self.began:.0f} s]", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class _Setup:
    spec: model.ScalingPolicySpec
    worker: model.WorkerSpec
    service: ServiceTime
    start_delay: float
    initial_replicas: int
    scan: TraceScan
    load: LoadCurve
    tasks: TaskStream
    horizon: float


def _check_flags(args: argparse.Namespace) -> None:
    for flag, value, positive in (
        ("--step", args.step, True),
        ("--service-seconds", args.service_seconds, True),
        ("--start-delay", args.start_delay, False),
        ("--target-wait", args.target_wait, False),
        ("--tail", args.tail, False),
        ("--oracle-interval", args.oracle_interval, True),
    ):
        if value is not None and not _within(value, positive):
            bound = "> 0" if positive else ">= 0"
            raise InputError(f"{flag} must be a number of seconds {bound}, got {value:g}")
    if args.plot is not None:
        _check_plot(args.plot)


def _check_plot(path: Path) -> None:
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise InputError(f"--plot {path}: the file name must end in {', '.join(PLOT_SUFFIXES)}")
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"--plot {path}: there is no folder {folder}")
    if path.is_dir():
        raise InputError(f"--plot {path}: is a folder")
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise InputError(f"--plot {path}: not writable")
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError("--plot needs matplotlib: pip install 'scalekeeper[sim]'")


def _prepare(args: argparse.Namespace, progress: Progress) -> _Setup:
    """Everything checked, the trace read once through (its tasks counted), nothing simulated yet."""
    _check_flags(args)
    try:
        spec, defaults = load_policy(args.policy)
    except OSError as exc:
        raise InputError(f"--policy {args.policy}: {exc.strerror or exc}") from None
    worker = select_worker(spec, args.queue)
    workers = spec.workers or []
    if args.queue is None and len(workers) > 1:
        names = ", ".join(w.queue for w in workers)
        _note(
            f"the policy has {len(workers)} queues ({names}): simulating the first, {worker.queue}; "
            "choose with --queue"
        )
    initial = worker.min_replicas if args.initial_replicas is None else args.initial_replicas
    if not worker.min_replicas <= initial <= worker.max_replicas:
        raise InputError(
            f"--initial-replicas {initial} is outside the worker's minReplicas..maxReplicas "
            f"({worker.min_replicas}..{worker.max_replicas})"
        )
    mean = args.service_seconds if args.service_seconds is not None else defaults.service_seconds
    distribution = args.service_distribution or defaults.service_distribution or "exponential"
    start_delay = args.start_delay if args.start_delay is not None else defaults.start_delay_seconds
    service = ServiceTime(DEFAULT_SERVICE_SECONDS if mean is None else mean, distribution)

    if not args.trace.is_file():
        what = "no such file" if not args.trace.exists() else "not a regular file (it is read twice)"
        raise InputError(f"--trace {args.trace}: {what}")
    trace = TraceFile(args.trace, args.step)
    scan = TraceScan()
    load = LoadCurve()

    def first_reading() -> Iterator[Interval]:
        for interval in trace.intervals(scan):
            load.add(interval)
            if not scan.rows & 0x3FF and progress.due():
                progress.say(f"reading the trace: {scan.rows:,} rows")
            yield interval

    readings = 0

    def intervals() -> Iterator[Interval]:
        nonlocal readings
        readings += 1
        return first_reading() if readings == 1 else trace.intervals()

    try:
        tasks = TaskStream(intervals, service, args.seed)
    except TraceError as exc:
        raise InputError(f"--trace {args.trace}: {exc}") from None
    except OSError as exc:
        raise InputError(f"--trace {args.trace}: {exc.strerror or exc}") from None
    if scan.origin:
        _note(f"the trace's times start at {scan.origin:.15g} s: shifted to start at 0")
    return _Setup(
        spec,
        worker,
        service,
        DEFAULT_START_DELAY_SECONDS if start_delay is None else start_delay,
        initial,
        scan,
        load,
        tasks,
        scan.end + args.tail,
    )


def _note(text: str) -> None:
    print(f"scalekeeper simulate: note: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = Progress()
    try:
        setup = _prepare(args, progress)
    except (ValueError, model.SpecError) as exc:
        print(f"scalekeeper simulate: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    s, worker = setup, setup.worker
    print(
        f"queue {worker.queue}: {s.tasks.count} tasks over {_minutes(s.scan.end)} simulated minutes "
        f"(+{_minutes(args.tail)} min tail), service {s.service.distribution} mean "
        f"{s.service.mean_seconds:g}s, concurrency {worker.concurrency} x prefetch "
        f"{worker.prefetch_multiplier}, start delay {s.start_delay:g}s, seed {args.seed}",
        flush=True,
    )

    def simulating(what: str) -> Callable[[float], None]:
        def tell(now: float) -> None:
            if progress.due():
                progress.say(f"{what}: simulated {now / s.horizon:.0%} of {_minutes(s.horizon)} minutes")

        return tell

    try:
        summaries: list[RuleSummary] = list(
            stream_rules(
                standard_rules(s.spec, worker),
                s.tasks,
                worker,
                s.start_delay,
                s.horizon,
                args.target_wait,
                s.initial_replicas,
                simulating("rules"),
            )
        )
        infeasible = None
        if args.oracle:
            workload = s.tasks.workload()
            run = oracle_run(
                workload,
                worker,
                s.start_delay,
                s.horizon,
                args.target_wait,
                args.oracle_interval,
                initial_replicas=s.initial_replicas,
                progress=simulating("oracle"),
            )
            summaries.append(summarize(run.result, workload.arrivals, s.horizon, args.target_wait))
            infeasible = len(run.infeasible)
        print(format_table(summaries, args.target_wait))
        more = []
        if infeasible is not None:
            more.append(
                (
                    "oracle",
                    f"the fewest replicas meeting the target wait each {args.oracle_interval:g} s, knowing "
                    f"the future; {infeasible} of its intervals infeasible even at maxReplicas",
                )
            )
        print(legend(summaries, args.target_wait, more))
        if args.plot is not None:
            plot(s.load, summaries, s.horizon, args.target_wait, args.plot)
            print(f"plot written to {args.plot}")
    except (OSError, TraceError) as exc:  # a plot not written; a trace changed since it was checked
        print(f"scalekeeper simulate: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:,.1f}".removesuffix(".0")


if __name__ == "__main__":
    sys.exit(main())
