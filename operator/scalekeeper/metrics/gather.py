"""A rendezvous of the threads that ask within a short window: the policies' cycles due together run on
worker threads, and their Prometheus reads are planned together (metrics/prometheus.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
P = TypeVar("P")


class _Gathering(Generic[T, P]):
    def __init__(self) -> None:
        self.items: list[T] = []
        self.closed = False
        self.plan: P | None = None
        self.planned = threading.Event()


class Gatherer(Generic[T, P]):
    """The first call waits up to `window` seconds for others, or until `full(items)` says no more are
    worth waiting for; then it makes the plan of every item gathered, and each call returns that plan with
    its own item's index. A window of 0: each call alone."""

    def __init__(
        self, window: float, full: Callable[[list[T]], bool], make_plan: Callable[[list[T]], P]
    ) -> None:
        self._window = window
        self._full = full
        self._make_plan = make_plan
        self._cond = threading.Condition()
        self._open: _Gathering[T, P] | None = None

    def join(self, item: T) -> tuple[P, int]:
        with self._cond:
            gathering = self._open
            first = gathering is None
            if gathering is None:
                gathering = self._open = _Gathering()
            index = len(gathering.items)
            gathering.items.append(item)
            if self._window <= 0 or self._full(gathering.items):
                self._close(gathering)
            if first:
                self._cond.wait_for(lambda: gathering.closed, timeout=self._window)
                self._close(gathering)
        if first:
            try:
                gathering.plan = self._make_plan(gathering.items)
            finally:
                # Set even when planning failed, so the others are not left waiting: they raise below.
                gathering.planned.set()
        else:
            gathering.planned.wait()
        if gathering.plan is None:
            raise RuntimeError("planning the gathered reads failed (see the first read's error)")
        return gathering.plan, index

    def _close(self, gathering: _Gathering[T, P]) -> None:
        gathering.closed = True
        if self._open is gathering:
            self._open = None
        self._cond.notify_all()
