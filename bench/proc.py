"""What /proc says of a process: its CPU (every thread), page faults and memory. Linux only."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """What /proc/<pid>/stat says of a process (every thread)."""

    command: str
    cpu_seconds: float  # utime + stime
    system_seconds: float  # stime: in the kernel (page faults, syscalls)
    minor_faults: int


def parse_proc_stat(text: str) -> ProcStat:
    # The command name may hold spaces and parentheses: it ends at the last ')', and the fields after it are
    # fixed (from the third, state: [7] minflt, [11] utime, [12] stime).
    command, _, rest = text.partition("(")[2].rpartition(")")
    fields = rest.split()
    utime, stime = int(fields[11]), int(fields[12])
    return ProcStat(command, (utime + stime) / CLOCK_TICKS, stime / CLOCK_TICKS, int(fields[7]))


def proc_stat(pid: int) -> ProcStat:
    return parse_proc_stat(Path(f"/proc/{pid}/stat").read_text())


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (every thread)."""
    return proc_stat(pid).cpu_seconds


def proc_status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def status_mib(status: Mapping[str, str], key: str) -> float:
    """A `NNN kB` field of /proc/<pid>/status (VmRSS, VmHWM...) in MiB; nan when it is not there."""
    value = status.get(key)
    return int(value.split()[0]) / 1024 if value else math.nan
