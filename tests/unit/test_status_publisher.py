"""The status writer's bookkeeping: what it records as written decides whether the next cycle writes."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from scalekeeper import model
from scalekeeper.memory import PolicyMemory
from scalekeeper.opmetrics import OperatorMetrics
from scalekeeper.policy import PolicyObject
from scalekeeper.publish import StatusPublisher

POLICY = PolicyObject("ns", "web", "uid-1", 1, {}, {})


def status(replicas: int) -> model.ScalingPolicyStatus:
    s = model.ScalingPolicyStatus()
    s.set_condition("Ready", "True", "Reconciled", f"{replicas} replicas")
    s.workers = f"default={replicas}"
    return s


class Writer:
    def __init__(self, failures: list[int]) -> None:
        self.failures = failures
        self.written: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]) -> None:
        if self.failures:
            code = self.failures.pop(0)
            raise ApiException(status=code, reason="Too Many Requests" if code == 429 else "Error")
        self.written.append(body)


def writes(metrics: OperatorMetrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "scalekeeper_scale_writes_total", {"kind": "status", "outcome": outcome}
    )
    return value or 0.0


@pytest.mark.parametrize("code", [429, 500, 503, 504])
def test_a_throttled_status_write_is_sent_again_next_cycle(
    code: int, caplog: pytest.LogCaptureFixture
) -> None:
    metrics, memory = OperatorMetrics(), PolicyMemory()
    publisher = StatusPublisher(metrics, lambda: 100.0, refresh_seconds=15.0)
    writer = Writer([code])
    assert publisher.publish(POLICY, status(3), memory, writer) is False
    assert writer.written == [] and memory.last_status is None
    assert writes(metrics, "deferred") == 1
    # a log line naming the policy, no traceback
    (record,) = [r for r in caplog.records if "deferred" in r.getMessage()]
    assert record.exc_info is None and record.__dict__["policy"] == "ns/web"
    assert publisher.publish(POLICY, status(3), memory, writer) is True
    assert len(writer.written) == 1 and writes(metrics, "ok") == 1
    # and, once written, the same status is not written again
    assert publisher.publish(POLICY, status(3), memory, writer) is False
    assert len(writer.written) == 1


@pytest.mark.parametrize("code", [400, 403, 422])
def test_a_refused_status_write_is_raised(code: int) -> None:
    metrics, memory = OperatorMetrics(), PolicyMemory()
    publisher = StatusPublisher(metrics, lambda: 100.0, refresh_seconds=15.0)
    with pytest.raises(ApiException):
        publisher.publish(POLICY, status(3), memory, Writer([code]))
    assert memory.last_status is None and writes(metrics, "error") == 1


def test_the_status_of_a_policy_deleted_during_its_cycle_is_dropped_not_an_error() -> None:
    metrics, memory = OperatorMetrics(), PolicyMemory()
    publisher = StatusPublisher(metrics, lambda: 100.0, refresh_seconds=15.0)
    assert publisher.publish(POLICY, status(3), memory, Writer([404])) is False
    assert writes(metrics, "gone") == 1 and writes(metrics, "error") == 0


def test_a_changed_status_is_written_and_an_unchanged_one_only_after_the_refresh() -> None:
    now = [0.0]
    metrics, memory = OperatorMetrics(), PolicyMemory()
    publisher = StatusPublisher(metrics, lambda: now[0], refresh_seconds=15.0)
    writer = Writer([])
    assert publisher.publish(POLICY, status(3), memory, writer)
    assert publisher.publish(POLICY, status(4), memory, writer)
    assert len(writer.written) == 2


def test_a_status_written_at_a_stale_resource_version_is_not_recorded_and_goes_out_again() -> None:
    metrics, memory = OperatorMetrics(), PolicyMemory()
    publisher = StatusPublisher(metrics, lambda: 100.0, refresh_seconds=15.0)
    writer = Writer([409])
    assert publisher.publish(POLICY, status(3), memory, writer) is False
    assert memory.last_status is None and writes(metrics, "conflict") == 1 and writes(metrics, "error") == 0
    assert publisher.publish(POLICY, status(3), memory, writer) is True
