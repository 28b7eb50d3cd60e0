"""Where the operator's time goes, from a `py-spy record --format raw` file (collapsed stacks).

    python -m bench.profile_summary out/bench-scale-profile-300.txt

Recorded with `--gil`: each sample is the thread holding the GIL, so the shares below are shares of the
operator's Python CPU (threads blocked on a socket or a lock are not sampled; py-spy's own idle detection
counted threads parked on a queue as busy). Three views:
  - stages: inclusive share of named parts of a cycle and of the operator around it (they overlap: the
    HPA list includes its HTTP and its deserialisation);
  - packages: self time by the package of the innermost frame (who burns the CPU);
  - functions: the top functions by self time.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stage:
    """A stack belongs to the stage when a frame is `func` in a file ending in `suffix` (any function when
    `func` is empty, any file containing `suffix`), called directly from a frame matching `under` when
    given. Stages sharing a label count a stack once."""

    label: str
    func: str
    suffix: str
    under: tuple[str, str] | None = None


# Function names are qualified (py-spy shows Class.method); files are shown relative to their sys.path entry.
STAGES: tuple[Stage, ...] = (
    Stage("policy cycle (Runtime.cycle, worker thread)", "Runtime.cycle", "scalekeeper/runtime.py"),
    Stage("  HPA list of the namespace (HpaClient.observe)", "HpaClient.observe", "scalekeeper/kube/hpa.py"),
    Stage(
        "  /scale GET per target (ReplicaClient.read)", "ReplicaClient.read", "scalekeeper/kube/targets.py"
    ),
    Stage("  Prometheus query (PrometheusReader.read)", "PrometheusReader.read", "metrics/prometheus.py"),
    Stage("  status validation (pydantic)", "read_status", "scalekeeper/memory.py"),
    Stage(
        "  status validation (pydantic)",
        "BaseModel.model_validate",
        "pydantic/main.py",
        ("Reconciler.run", ""),
    ),
    Stage("  spec parsing (model.parse_spec)", "parse_spec", "scalekeeper/model/policy.py"),
    Stage("  decision (decide_tiers)", "decide_tiers", "scalekeeper/decision.py"),
    Stage("  report: conditions, Events, logs (Reporter.report)", "Reporter.report", "scalekeeper/report.py"),
    Stage(
        "  status diff/write (StatusPublisher.publish)", "StatusPublisher.publish", "scalekeeper/publish.py"
    ),
    Stage("daemon loop: body deepcopy", "deepcopy", "copy.py", ("size_policy", "scalekeeper/handlers.py")),
    Stage("kubernetes client: response -> model objects", "ApiClient.response_deserialize", "api_client.py"),
    Stage("kubernetes client: model -> dict (sanitize)", "ApiClient.sanitize_for_serialization", ""),
    Stage("logging (records, JSON formatting, writes)", "Logger.handle", "logging/__init__.py"),
    Stage("operator metrics (prometheus_client)", "", "prometheus_client/"),
    Stage("leader election (LeaseElector)", "LeaseElector._loop", "scalekeeper/kube/leader.py"),
    Stage("event loop thread (kopf, daemons, to_thread hand-offs)", "BaseEventLoop.run_forever", ""),
)
# The event loop thread's own work: kopf's watch streams, daemon bookkeeping, to_thread hand-offs.
KOPF_ONLY = "kopf machinery (no scalekeeper frame on the stack)"

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True)
class Frame:
    func: str
    file: str


@dataclass
class Profile:
    samples: int
    stages: Counter[str]
    packages: Counter[str]
    functions: Counter[str]


def parse_frame(text: str) -> Frame:
    match = _FRAME.match(text.strip())
    if match is None:
        return Frame(text.strip(), "")
    return Frame(match["func"], match["file"])


def package_of(path: str) -> str:
    """The top-level package of a file as py-spy shows it (relative to its sys.path entry); the operator's
    own code by subpackage (scalekeeper.kube, scalekeeper.tiers...)."""
    for marker in ("site-packages/", "/lib/python3.11/", "/lib/python3.12/", "/lib/python3.13/"):
        path = path.split(marker, 1)[-1]
    parts = [p.removesuffix(".py") for p in path.split("/") if p]
    if not parts:
        return "(native)"
    if parts[0] == "scalekeeper" and len(parts) > 1:
        return f"scalekeeper.{parts[1]}"
    return parts[0]


def _short(frame: Frame) -> str:
    return f"{frame.func} ({frame.file})"


def _matches(frame: Frame, func: str, suffix: str) -> bool:
    if not func:
        return suffix in frame.file
    return frame.func == func and frame.file.endswith(suffix)


def _in_stage(frames: list[Frame], stage: Stage) -> bool:
    for i, frame in enumerate(frames):
        if _matches(frame, stage.func, stage.suffix) and (
            stage.under is None or (i > 0 and _matches(frames[i - 1], *stage.under))
        ):
            return True
    return False


def stages_of(frames: list[Frame]) -> set[str]:
    hit = {stage.label for stage in STAGES if _in_stage(frames, stage)}
    # cli.py sits at the root of every event-loop stack (it calls kopf.run): it is not the operator's work.
    ours = any(f.file.startswith("scalekeeper/") and f.file != "scalekeeper/cli.py" for f in frames)
    if not ours and any(f.file.startswith("kopf/") for f in frames):
        hit.add(KOPF_ONLY)
    return hit


def summarise(raw: str) -> Profile:
    profile = Profile(0, Counter(), Counter(), Counter())
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [parse_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        profile.samples += count
        for label in stages_of(frames):
            profile.stages[label] += count
        profile.packages[package_of(frames[-1].file)] += count
        profile.functions[_short(frames[-1])] += count
    return profile


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:5.1f}%" if whole else "    -"


def render(profile: Profile, seconds: float | None = None, rate: int = 100, top: int = 15) -> list[str]:
    """Markdown tables; with the recording's duration, the samples also tell CPU cores in use."""
    n = profile.samples
    out = []
    if seconds:
        out.append(
            f"{n} active samples at {rate} Hz over {seconds:.0f} s = {n / rate / seconds:.2f} cores busy"
        )
    out += ["", "| stage (inclusive) | share of CPU |", "|---|---:|"]
    labels = [*dict.fromkeys(stage.label for stage in STAGES), KOPF_ONLY]
    out += [f"| {label} | {_share(profile.stages[label], n)} |" for label in labels]
    out += ["", "| package (self) | share of CPU |", "|---|---:|"]
    out += [f"| {pkg} | {_share(c, n)} |" for pkg, c in profile.packages.most_common(top)]
    out += ["", "| function (self) | share of CPU |", "|---|---:|"]
    out += [f"| `{fn}` | {_share(c, n)} |" for fn, c in profile.functions.most_common(top)]
    return out


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    print("\n".join(render(summarise(Path(sys.argv[1]).read_text()))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
