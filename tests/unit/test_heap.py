"""The heap trimmer: off at 0, calls the trim on its period, and finds glibc's malloc_trim here."""

from __future__ import annotations

import sys
import threading

import pytest

from scalekeeper.config import ConfigError, OperatorConfig
from scalekeeper.heap import HeapTrimmer, glibc_malloc_trim


def test_the_trimmer_calls_the_trim_on_its_period_until_stopped() -> None:
    called = threading.Event()
    calls: list[int] = []

    def trim() -> int:
        calls.append(1)
        if len(calls) >= 3:
            called.set()
        return 1

    trimmer = HeapTrimmer(0.01, trim)
    trimmer.start()
    assert called.wait(5)
    trimmer.stop()
    assert trimmer.trims >= 3


def test_a_zero_period_starts_nothing() -> None:
    calls: list[int] = []
    trimmer = HeapTrimmer(0, lambda: calls.append(1) or 0)
    trimmer.start()
    trimmer.stop()
    assert calls == [] and trimmer.trims == 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim is Linux-only")
def test_glibc_malloc_trim_is_found_and_runs() -> None:
    trim = glibc_malloc_trim()
    assert trim is not None and trim() in (0, 1)


def test_the_period_is_read_from_the_environment_and_bounded() -> None:
    assert OperatorConfig.from_env({}).heap_trim_seconds == 60
    assert OperatorConfig.from_env({"SCALEKEEPER_HEAP_TRIM_SECONDS": "0"}).heap_trim_seconds == 0
    with pytest.raises(ConfigError, match="SCALEKEEPER_HEAP_TRIM_SECONDS"):
        OperatorConfig.from_env({"SCALEKEEPER_HEAP_TRIM_SECONDS": "-1"})
