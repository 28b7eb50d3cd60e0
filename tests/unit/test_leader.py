"""Leader election on a fake Lease API with injected clocks: expiry is measured on the follower's own
monotonic clock from when it saw the record change, so a skewed wall clock never takes a live Lease."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from scalekeeper.kube.leader import LeaseElector


class FakeLeases:
    """One Lease, with the API server's optimistic concurrency on replace."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0

    def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> dict[str, Any]:
        if self.lease is None:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.lease)

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        if self.lease is not None:
            raise ApiException(status=409, reason="AlreadyExists")
        return self._store(body)

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any], **_: Any) -> Any:
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        return self._store(body)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.lease = copy.deepcopy(body)
        self.lease["metadata"]["resourceVersion"] = str(self.version)
        return copy.deepcopy(self.lease)

    @property
    def holder(self) -> str | None:
        return None if self.lease is None else self.lease["spec"].get("holderIdentity")


class Replica:
    """An elector with its own clocks: `mono` is its monotonic clock, `skew` what its wall clock is off by."""

    def __init__(self, leases: FakeLeases, identity: str, skew: float = 0.0) -> None:
        self.mono = 1000.0
        self.skew = skew
        self.elector = LeaseElector(
            client.ApiClient(),
            "lease",
            "ns",
            identity,
            lease_seconds=15,
            clock=lambda: 1_700_000_000 + self.mono + self.skew,
            monotonic=lambda: self.mono,
            leases=leases,
        )

    def advance(self, seconds: float) -> None:
        self.mono += seconds


def test_the_first_replica_takes_a_missing_lease_and_renews_it() -> None:
    leases = FakeLeases()
    a = Replica(leases, "a")
    assert a.elector.try_acquire_or_renew() and a.elector.is_leader() and leases.holder == "a"
    a.advance(5)
    assert a.elector.try_acquire_or_renew() and leases.lease is not None
    assert leases.lease["spec"]["leaseTransitions"] == 0


@pytest.mark.parametrize("skew", [0.0, 3600.0, -3600.0])
def test_a_follower_waits_the_full_duration_from_its_own_observation_whatever_its_wall_clock(
    skew: float,
) -> None:
    leases = FakeLeases()
    a, b = Replica(leases, "a"), Replica(leases, "b", skew=skew)
    a.elector.try_acquire_or_renew()
    # An hour ahead, b would read a's renewTime as long expired; an hour behind, as fresh forever.
    assert not b.elector.try_acquire_or_renew()
    b.advance(14.9)
    assert not b.elector.try_acquire_or_renew()  # the record it saw has not changed for 14.9 s only
    b.advance(0.2)
    assert b.elector.try_acquire_or_renew() and leases.holder == "b"
    assert leases.lease is not None and leases.lease["spec"]["leaseTransitions"] == 1


def test_a_renewing_holder_is_never_taken_over_and_each_renewal_restarts_the_followers_count() -> None:
    leases = FakeLeases()
    a, b = Replica(leases, "a"), Replica(leases, "b", skew=3600.0)
    a.elector.try_acquire_or_renew()
    b.elector.try_acquire_or_renew()
    for _ in range(10):  # 100 s: a renews every 5 s, b looks every 5 s
        a.advance(5)
        b.advance(5)
        assert a.elector.try_acquire_or_renew()
        assert not b.elector.try_acquire_or_renew()
    assert leases.holder == "a"


def test_a_holder_that_cannot_renew_stops_acting_before_a_follower_may_take_over() -> None:
    leases = FakeLeases()
    a, b = Replica(leases, "a"), Replica(leases, "b")
    a.elector.try_acquire_or_renew()
    b.elector.try_acquire_or_renew()  # b starts counting now
    a.advance(10)
    assert not a.elector.is_leader()  # 10 s = two thirds of 15 s since its renewal began
    b.advance(10)
    assert not b.elector.try_acquire_or_renew()
    b.advance(5)
    assert b.elector.try_acquire_or_renew()


def test_a_renewal_counts_from_when_it_was_asked_for() -> None:
    leases = FakeLeases()
    a = Replica(leases, "a")
    slow = leases.read_namespaced_lease

    def read_taking_eight_seconds(name: str, namespace: str, **kw: Any) -> dict[str, Any]:
        a.advance(8)
        return slow(name, namespace, **kw)

    a.elector.try_acquire_or_renew()
    leases.read_namespaced_lease = read_taking_eight_seconds  # type: ignore[method-assign]
    assert a.elector.try_acquire_or_renew()
    a.advance(2.1)  # 10.1 s after the renewal was asked for, 2.1 s after it returned
    assert not a.elector.is_leader()


def test_a_released_lease_is_taken_at_once() -> None:
    leases = FakeLeases()
    a, b = Replica(leases, "a"), Replica(leases, "b")
    a.elector.try_acquire_or_renew()
    b.elector.try_acquire_or_renew()
    a.elector.stop()
    assert leases.holder is None and not a.elector.is_leader()
    assert b.elector.try_acquire_or_renew() and leases.holder == "b"
