"""Polling with a deadline, for state the cluster reaches eventually, and waiting on the operator's own
cycles for state that must not change."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

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


def holds_until(what: str, probe: Callable[[], object], until: float, interval: float = 1.0) -> None:
    """Check that `probe` stays truthy until the monotonic time `until`. For a hold whose length the test
    sets (a fault's duration, a rate policy's period), not a guess at how long the operator takes to act:
    for that, `wait_cycles`."""
    while True:
        value = probe()
        if not value:
            raise AssertionError(
                f"{what} stopped holding {until - time.monotonic():.0f}s early; last: {value!r}"
            )
        if time.monotonic() >= until:
            return
        time.sleep(max(0.0, min(interval, until - time.monotonic())))


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


# ---------------------------------------------------------------------------------------------- the operator
# Waiting on the operator's own cycles, not on seconds: "nothing happened" means something only once the
# operator has run the cycles in which it would have acted.

CYCLES = "scalekeeper_reconcile_seconds_count"  # one per policy cycle that ran to its end
POLICIES = "scalekeeper_policies_served"  # the policies the operator is sizing


class MetricsSource(Protocol):
    def metrics_text(self) -> str: ...


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named `name` (as exposed: `..._total`, `..._count`) in a Prometheus text
    exposition, over those carrying every one of `labels`."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def operator_metric(operator: MetricsSource, name: str, **labels: str) -> float:
    return metric_sum(operator.metrics_text(), name, **labels)


def wait_cycles(
    operator: MetricsSource,
    n: int,
    holds: Callable[[], object] | None = None,
    what: str = "",
    timeout: float = 120.0,
    interval: float = 0.5,
) -> float:
    """Wait until the operator has run `n` more cycles of each policy it sizes: its cycle counter up by
    n x P, P its `scalekeeper_policies` (the counter is the operator's, not a policy's: with intervals
    alike, n of each). The first counted may have begun before the call: ask for one more than the
    cycles that must have seen what the test just did.

    `holds`, when given, is checked before, at every poll and after the last cycle; the wait fails as
    soon as it is falsy, naming `what` and how many cycles had run. Returns the cycles counted."""
    deadline = time.monotonic() + timeout
    text = operator.metrics_text()
    last = metric_sum(text, CYCLES)
    policies = max(1, int(metric_sum(text, POLICIES)))
    counted = 0.0
    problem: object = None

    def check() -> None:
        if holds is None:
            return
        value = holds()
        if not value:
            raise AssertionError(
                f"{what or 'the condition'} stopped holding after {counted:.0f} of {n * policies} cycles "
                f"({n} of each of {policies} policies); last: {value!r}"
            )

    check()
    while counted < n * policies:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {n} cycles of each of {policies} policies: "
                f"{counted:.0f} of {n * policies} ran; last problem: {problem!r}"
            )
        time.sleep(interval)
        try:
            text = operator.metrics_text()
        except Exception as exc:  # the API server may be restarting (test_faults): try again
            problem = exc
            continue
        now = metric_sum(text, CYCLES)
        counted += now - last if now >= last else now  # fewer: the operator restarted, its count with it
        last = now
        policies = max(policies, int(metric_sum(text, POLICIES)))
        check()
    return counted
