"""The load program: a web request ramp (locust's, demo_watch.web_load) and a burst of video tasks, each
video step run at its time with `kubectl exec` in the load generator pod."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

# ------------------------------------------------------------------------------------------ load program


@dataclass(frozen=True)
class Step:
    at: float  # seconds after the start of the live view
    what: str  # "web" or "video"
    label: str
    args: tuple[str, ...]  # the command run in the load generator pod (none for web: the locust pod)
    seconds: float  # how long it runs


# Web requests: a ramp to 60 req/s over a minute, held, then stopped (rows of t_seconds, rate for 10 s).
# 60 req/s needs 4 web pods (15 each) and 3 read replicas (20 each): with six video workers that is what a
# 2-CPU kind node has room for next to its control plane (see demo_app).
WEB_RAMP = [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60)] + [(t, 60) for t in range(60, 180, 10)]
WEB_START = 15.0
WEB_SECONDS = 180.0
# Video tasks: 240 tasks of 2 s at 6/s, once video has cooled down to zero and web has grown (six Celery pods
# starting at once take most of a 2-core machine for a few seconds; web would serve less meanwhile).
VIDEO_START = 100.0
VIDEO_TASKS, VIDEO_RATE, VIDEO_TASK_SECONDS = 240, 6.0, 2.0
# Then a few long ones, sent as the burst ends: the workers scale down while they run, and the pods running
# them are kept (busy-worker protection: the ProtectingBusyWorkers Event names them).
LONG_START = VIDEO_START + VIDEO_TASKS / VIDEO_RATE - 5.0
LONG_TASKS, LONG_TASK_SECONDS = 4, 40.0
_PEAK = max(r for _, r in WEB_RAMP)
_RAMP_SECONDS = min(t for t, r in WEB_RAMP if r == _PEAK)


def web_points(rows: Sequence[tuple[float, float]] = WEB_RAMP, step: float = 10.0) -> str:
    """The web ramp as the locust shape's `t:rps` points (manifests/examples/loadtest/shape.py), from the
    locust pod's start: nothing until WEB_START (the pod starts meanwhile), then each row's rate for its
    step, a step change at each row; the last point ends the run."""
    points = [(0.0, 0.0)]
    for t, rate in rows:
        if rate != points[-1][1]:
            points += [(WEB_START + t, points[-1][1]), (WEB_START + t, float(rate))]
    points.append((WEB_START + rows[-1][0] + step, points[-1][1]))
    return ",".join(f"{t:g}:{rate:g}" for t, rate in points)


def offered_rate(rel: float, web_shift: float = 0.0) -> float:
    """Requests per second the program offers at ``rel`` seconds, locust having started ``web_shift``
    seconds after the live view (for the header and the plot's dashed line)."""
    t = rel - web_shift - WEB_START
    if t < 0 or t >= WEB_SECONDS:
        return 0.0
    rate = 0.0
    for start, r in WEB_RAMP:
        if t >= start:
            rate = r
    return float(rate)


def load_program() -> list[Step]:
    return [
        Step(
            WEB_START,
            "web",
            f"web (locust): requests ramp {WEB_RAMP[0][1]} -> {_PEAK}/s over {_RAMP_SECONDS:g}s, held, "
            f"stopped at +{WEB_START + WEB_SECONDS:g}s",
            (),
            WEB_SECONDS,
        ),
        Step(
            VIDEO_START,
            "video",
            f"video: {VIDEO_TASKS} tasks of {VIDEO_TASK_SECONDS:g}s at {VIDEO_RATE:g}/s",
            (
                "python",
                "-m",
                "scalekeeper_demo.produce",
                "--queue",
                "video",
                "--count",
                str(VIDEO_TASKS),
                "--rate",
                f"{VIDEO_RATE:g}",
                "--seconds",
                f"{VIDEO_TASK_SECONDS:g}",
                "--run-id",
                "demo",
            ),
            VIDEO_TASKS / VIDEO_RATE,
        ),
        Step(
            LONG_START,
            "video",
            f"video: {LONG_TASKS} tasks of {LONG_TASK_SECONDS:g}s as the burst ends (their pods are kept)",
            (
                *("python", "-m", "scalekeeper_demo.produce", "--queue", "video"),
                *("--count", str(LONG_TASKS), "--seconds", f"{LONG_TASK_SECONDS:g}", "--run-id", "demo-long"),
            ),
            LONG_TASK_SECONDS,
        ),
    ]


def phase_at(rel: float, steps: Sequence[Step], web_shift: float = 0.0) -> str:
    """What the load program is doing at ``rel`` seconds, for the table's header."""
    parts = []
    for s in steps:
        at = s.at + (web_shift if s.what == "web" else 0.0)
        if at <= rel < at + s.seconds:
            if s.what == "web":
                parts.append(f"web {offered_rate(rel, web_shift):g} req/s offered")
            else:
                parts.append(f"publishing {s.what} tasks")
        elif rel < at:
            parts.append(f"{s.what} starts in {at - rel:.0f}s")
    return ", ".join(parts) or "load stopped: draining"


class LoadProgram:
    """Runs the steps with a command with `kubectl exec` into the load generator pod, each at its time, in a
    thread (web's, which has none, is the locust pod's)."""

    def __init__(self, namespace: str, pod: str, steps: Sequence[Step], log_path: Path) -> None:
        self.namespace, self.pod, self.steps = namespace, pod, [s for s in steps if s.args]
        self.log_path = log_path
        self.procs: list[subprocess.Popen[bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = 0.0
        self.failures: list[str] = []
        self.pidfiles: list[str] = []
        self._lock = threading.Lock()

    def begin(self, start: float) -> None:
        self.start = start
        self._thread.start()

    def _run(self) -> None:
        with self.log_path.open("ab") as log:
            for step in sorted(self.steps, key=lambda s: s.at):
                delay = self.start + step.at - time.time()
                if delay > 0 and self._stop.wait(delay):
                    return
                log.write(f"--- +{step.at:g}s {step.label}: {' '.join(step.args)}\n".encode())
                log.flush()
                # The step's process in the pod writes its pid first, so stop() can end it by that id.
                pidfile = f"/tmp/demo-step-{step.what}.pid"
                wrapped = ("sh", "-c", f'echo $$ > {pidfile}; exec "$@"', "sh", *step.args)
                proc = subprocess.Popen(
                    ["kubectl", "-n", self.namespace, "exec", self.pod, "--", *wrapped],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                )
                with self._lock:
                    self.procs.append(proc)
                    self.pidfiles.append(pidfile)

    def finished(self) -> bool:
        started = len(self.procs) == len(self.steps)
        done = started and all(p.poll() is not None for p in self.procs)
        for p in self.procs:
            if p.poll() not in (None, 0):
                msg = f"a load step exited with {p.returncode} (see {self.log_path})"
                if msg not in self.failures:
                    self.failures.append(msg)
        return done

    def stop(self, interrupted: bool = False) -> None:
        """Stops the steps not yet started and the kubectl processes this program started (by handle).
        When interrupted, also the steps' processes in the pod: Ctrl-C reaches the local kubectl, not
        what it runs there. Each is ended by the pid it wrote, if that pid still runs scalekeeper_demo."""
        self._stop.set()
        with self._lock:
            started = list(zip(self.procs, self.pidfiles, strict=True))
        running = [p for p, _ in started if p.poll() is None]
        files = " ".join(f for p, f in started if interrupted or p.poll() is None)
        if files:
            script = (
                f"for f in {files}; do if [ -f $f ]; then pid=$(cat $f); "
                "grep -q scalekeeper_demo /proc/$pid/cmdline 2>/dev/null && kill $pid; rm -f $f; fi; "
                "done; true"
            )
            subprocess.run(
                ["kubectl", "-n", self.namespace, "exec", self.pod, "--", "sh", "-c", script],
                capture_output=True,
                timeout=30,
                check=False,
            )
        for p in running:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
