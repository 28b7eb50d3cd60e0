"""Giving freed heap back to the system.

Bursts (a start with thousands of policies: every policy and workload listed and decoded, every first
cycle at once) leave glibc's heap full of freed chunks between live ones; the
process keeps them, and its RSS stays at the burst's peak. Measured at 3,000 policies: 1.51 GB resident,
625 MB after one `malloc_trim(0)`. The trimmer calls it now and then from a thread of its own. Only glibc
has it: elsewhere the trimmer does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
from collections.abc import Callable

log = logging.getLogger("scalekeeper.heap")


def glibc_malloc_trim() -> Callable[[], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int

    def call() -> int:
        return int(trim(0))

    return call


class HeapTrimmer:
    def __init__(self, every_seconds: float, trim: Callable[[], int] | None = None) -> None:
        self.every_seconds = every_seconds
        self._trim = trim if trim is not None else glibc_malloc_trim()
        self._stop = threading.Event()
        self.trims = 0

    def start(self) -> None:
        if self.every_seconds <= 0 or self._trim is None:
            log.info("heap trimming off", extra={"available": self._trim is not None})
            return
        threading.Thread(target=self._run, name="heap-trim", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def trim_once(self) -> None:
        if self._trim is not None:
            self._trim()
            self.trims += 1

    def _run(self) -> None:
        while not self._stop.wait(self.every_seconds):
            self.trim_once()
