"""Polling with a deadline, for state the cluster reaches eventually."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 120.0, interval: float = 1.0) -> T:
    """Call `probe` until it returns something truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # the API may refuse while a thing is being created
            last = exc
        else:
            if last:
                return last  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def wait_deleted(what: str, read: Callable[[], object], timeout: float = 60.0) -> None:
    """Wait until `read` (an API read of one object) answers 404."""
    from kubernetes.client.rest import ApiException

    def gone() -> bool:
        try:
            read()
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(what, gone, timeout=timeout)
