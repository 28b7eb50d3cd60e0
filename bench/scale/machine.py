"""Where the machine's CPU went over a window, by program: on one machine the operator shares its cores with
the kind node's API server, etcd and Prometheus, and the figure that bounds the cycles may be theirs. The
kind node is a container, so its processes are in this machine's /proc."""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from pathlib import Path

from bench.proc import CLOCK_TICKS, parse_proc_stat

PROC = Path("/proc")


@dataclass(frozen=True)
class MachineCpu:
    busy_seconds: float  # every CPU's non-idle time, from /proc/stat
    by_program: dict[str, float]  # CPU seconds of the live processes, by program


def program(comm: str, cmdline: list[str], own_pid: int, pid: int) -> str:
    """A name for a process: its command, and for Python what it runs (`-m` module or script)."""
    if pid == own_pid:
        return "bench (this process)"
    if comm.startswith("kworker/"):
        return "kworker"  # the kernel's, named by what each is doing at the moment
    if not comm.startswith("python") or not cmdline:
        return comm
    args = cmdline[1:]
    for flag, value in itertools.pairwise(args):
        if flag == "-m":
            return f"python -m {value}"
    if args and args[0] == "-c":
        return "python -c"
    scripts = [a for a in args if not a.startswith("-")]
    return f"python {Path(scripts[0]).name}" if scripts else comm


def _busy_seconds() -> float:
    fields = (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(f) for f in fields]
    idle = ticks[3] + ticks[4]  # idle and iowait
    # guest time is counted in user already
    return (sum(ticks[:8]) - idle) / CLOCK_TICKS


def sample() -> MachineCpu:
    by_program: dict[str, float] = {}
    own = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = parse_proc_stat((entry / "stat").read_text())
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # gone meanwhile
        args = [a.decode(errors="replace") for a in cmdline if a]
        name = program(stat.command, args, own, int(entry.name))
        by_program[name] = by_program.get(name, 0.0) + stat.cpu_seconds
    return MachineCpu(_busy_seconds(), by_program)


def cores_by_program(a: MachineCpu, b: MachineCpu, seconds: float, top: int = 8) -> dict[str, float]:
    """Cores each program kept busy between two samples, the busiest first, the rest as "other"; and the
    whole machine as "all". A process that ended between them counts only in "all"."""
    grown = {name: used - a.by_program.get(name, 0.0) for name, used in b.by_program.items()}
    busiest = sorted(((n, u) for n, u in grown.items() if u > 0), key=lambda item: -item[1])[:top]
    total = (b.busy_seconds - a.busy_seconds) / seconds
    named = {name: round(used / seconds, 3) for name, used in busiest}
    return {"all": round(total, 3), **named, "other": round(max(total - sum(named.values()), 0.0), 3)}


def cores_over(seconds: float) -> dict[str, float]:
    """Cores busy over the next `seconds`, by program (cores_by_program)."""
    first = sample()
    time.sleep(seconds)
    return cores_by_program(first, sample(), seconds)
