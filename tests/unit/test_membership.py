"""Member Leases on a fake Lease API (optimistic concurrency, label selection) with injected clocks: who
is live and when a member counts as expired is measured on each replica's own monotonic clock from when it
saw the record change, so a skewed wall clock never ends a live member; dead members leave the ring and
their Leases are deleted; an active/passive release's leader Lease holds every member back."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from scalekeeper.engine.ring import HashRing
from scalekeeper.kube.membership import GROUP_LABEL, Membership, member_lease_name

GROUP, NS = "sk", "ops"


class FakeLeases:
    """The Leases of one namespace, with the API server's optimistic concurrency on replace and delete."""

    def __init__(self) -> None:
        self.leases: dict[str, dict[str, Any]] = {}
        self.version = 0

    def read_namespaced_lease(self, name: str, namespace: str, **_: Any) -> dict[str, Any]:
        if name not in self.leases:
            raise ApiException(status=404, reason="Not Found")
        return copy.deepcopy(self.leases[name])

    def list_namespaced_lease(self, namespace: str, label_selector: str, **_: Any) -> dict[str, Any]:
        key, value = label_selector.split("=")
        found = [v for v in self.leases.values() if (v["metadata"].get("labels") or {}).get(key) == value]
        return {"items": copy.deepcopy(found)}

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        if body["metadata"]["name"] in self.leases:
            raise ApiException(status=409, reason="AlreadyExists")
        return self._store(body)

    def replace_namespaced_lease(self, name: str, namespace: str, body: dict[str, Any], **_: Any) -> Any:
        if body["metadata"].get("resourceVersion") != self.leases[name]["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        return self._store(body)

    def delete_namespaced_lease(
        self, name: str, namespace: str, body: client.V1DeleteOptions | None = None, **_: Any
    ) -> None:
        if name not in self.leases:
            raise ApiException(status=404, reason="Not Found")
        wanted = body.preconditions.resource_version if body and body.preconditions else None
        if wanted is not None and wanted != self.leases[name]["metadata"]["resourceVersion"]:
            raise ApiException(status=409, reason="Conflict")
        del self.leases[name]

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[stored["metadata"]["name"]] = stored
        return copy.deepcopy(stored)


class Replica:
    """A member with its own clocks: `mono` its monotonic clock, `skew` what its wall clock is off by."""

    def __init__(self, leases: FakeLeases, identity: str, skew: float = 0.0) -> None:
        self.mono = 1000.0
        self.changes: list[tuple[frozenset[str], frozenset[str]]] = []
        self.m = Membership(
            client.ApiClient(),
            GROUP,
            NS,
            identity,
            lease_seconds=15,
            request_timeout=5,
            monotonic=lambda: self.mono,
            clock=lambda: 1_700_000_000 + self.mono + skew,
            leases=leases,
        )
        self.m.on_ring_change = self._changed

    def _changed(self, before: HashRing, after: HashRing) -> None:
        self.changes.append((before.members, after.members))

    def advance(self, seconds: float) -> None:
        self.mono += seconds

    def members(self) -> frozenset[str]:
        return self.m.ring().members


def test_a_member_renews_a_labelled_lease_of_its_own_and_is_ready_once_it_has_listed() -> None:
    leases = FakeLeases()
    a = Replica(leases, "a")
    assert not a.m.ready() and not a.m.serving()
    a.m.refresh()
    lease = leases.leases[member_lease_name(GROUP, "a")]
    assert lease["metadata"]["labels"] == {GROUP_LABEL: GROUP} and lease["spec"]["holderIdentity"] == "a"
    # b starts with a: a's first listing did not see b's Lease, so a is not ready until its second.
    b = Replica(leases, "b")
    b.m.refresh()
    assert not a.m.ready() and not a.m.serving()
    a.advance(5)
    a.m.refresh()
    assert leases.leases[member_lease_name(GROUP, "a")]["spec"]["renewTime"] != lease["spec"]["renewTime"]
    assert a.m.ready() and a.m.serving() and a.members() == {"a", "b"}
    # Ready: every policy's owner is new to the scheduler, which hears of the whole ring at once.
    assert a.changes[-1] == (frozenset(), frozenset({"a", "b"}))


@pytest.mark.parametrize("skew", [0.0, 3600.0, -3600.0])
def test_a_silent_member_leaves_the_ring_after_its_duration_and_expires_after_the_timeout_more(
    skew: float,
) -> None:
    leases = FakeLeases()
    a, b = Replica(leases, "a", skew=skew), Replica(leases, "b")
    a.m.refresh()
    b.m.refresh()
    a.m.refresh()
    assert a.members() == b.members() == {"a", "b"}
    # a stops renewing (killed). b looks every 5 s: a's renewTime, whatever a's clock said, is not read.
    for _ in range(2):
        b.advance(5)
        b.m.refresh()
    assert "a" in b.members() and not b.m.expired("a")  # unchanged for 10 s of its 15
    b.advance(5)
    b.m.refresh()
    assert b.members() == {"b"} and not b.m.expired("a")  # 15 s: dead, but could still be writing
    b.advance(4.9)
    assert not b.m.expired("a")
    b.advance(0.2)
    assert b.m.expired("a")  # 20.1 s: past duration + request timeout
    assert b.changes[-1] == (frozenset({"a", "b"}), frozenset({"b"}))


def test_a_renewing_member_never_expires_whatever_its_wall_clock() -> None:
    leases = FakeLeases()
    a, b = Replica(leases, "a", skew=-3600.0), Replica(leases, "b")
    for _ in range(20):  # 100 s
        a.advance(5)
        b.advance(5)
        a.m.refresh()
        b.m.refresh()
        assert b.members() == {"a", "b"} and not b.m.expired("a")


def test_a_member_that_cannot_renew_stops_serving_before_anyone_may_count_it_expired() -> None:
    leases = FakeLeases()
    a, b = Replica(leases, "a"), Replica(leases, "b")
    a.m.refresh()
    b.m.refresh()
    a.advance(10)
    assert not a.m.serving()  # 10 s = two thirds of 15 s since its renewal began
    b.advance(10)
    b.m.refresh()
    assert not b.m.expired("a")


def test_a_member_never_seen_counts_as_expired_only_a_full_expiry_after_the_first_listing() -> None:
    leases = FakeLeases()
    b = Replica(leases, "b")
    assert not b.m.expired("gone")  # not listed yet: nothing is known
    b.m.refresh()
    b.advance(19.9)
    assert not b.m.expired("gone")
    b.advance(0.2)
    assert b.m.expired("gone")


def test_a_dead_members_lease_is_deleted_as_it_leaves_the_ring_and_a_leaving_one_deletes_its_own() -> None:
    leases = FakeLeases()
    a, b, c = Replica(leases, "a"), Replica(leases, "b"), Replica(leases, "c")
    for r in (a, b, c):
        r.m.refresh()
    # a is killed. Its Lease lives exactly as long as b counts it a member (when is the test above's).
    while "a" in b.members():
        assert member_lease_name(GROUP, "a") in leases.leases
        for r in (b, c):
            r.advance(1)
            r.m.refresh()
    assert member_lease_name(GROUP, "a") not in leases.leases and b.members() == {"b", "c"}
    assert {member_lease_name(GROUP, "b"), member_lease_name(GROUP, "c")} <= set(leases.leases)
    c.m.stop()
    assert member_lease_name(GROUP, "c") not in leases.leases


def test_a_replica_joining_after_a_member_died_never_counts_it_live() -> None:
    # The joiner has no history of the dead member's Lease: had it still been there, the joiner would have
    # counted it live for a whole duration of its own and left its share of the policies unclaimed.
    leases = FakeLeases()
    a, b = Replica(leases, "a"), Replica(leases, "b")
    for r in (a, b, a):
        r.m.refresh()
    for _ in range(3):  # a killed: b finds it dead after 15 s
        b.advance(5)
        b.m.refresh()
    joiner = Replica(leases, "c")
    joiner.m.refresh()
    joiner.advance(5)
    joiner.m.refresh()
    assert joiner.members() == {"b", "c"} and not joiner.m.expired("a")


def test_an_active_passive_leaders_lease_holds_every_member_back_until_released() -> None:
    leases = FakeLeases()
    old = {"metadata": {"name": GROUP}, "spec": {"holderIdentity": "old-pod", "renewTime": "t1"}}
    leases.create_namespaced_lease(NS, old)
    a = Replica(leases, "a")
    a.m.refresh()
    a.m.refresh()
    assert a.m.ready() and not a.m.serving()
    leases.leases[GROUP]["spec"] = {"leaseDurationSeconds": 15}  # the old pod released it on its way out
    a.advance(5)
    a.m.refresh()
    assert a.m.serving()


def test_a_crashed_active_passive_leader_holds_members_back_only_until_its_lease_expires() -> None:
    leases = FakeLeases()
    old = {"metadata": {"name": GROUP}, "spec": {"holderIdentity": "old-pod", "renewTime": "t1"}}
    leases.create_namespaced_lease(NS, old)
    a = Replica(leases, "a")
    for _ in range(4):
        a.m.refresh()
        assert not a.m.serving()
        a.advance(5)
    a.advance(0.1)
    a.m.refresh()  # 20.1 s unchanged: past duration + request timeout
    assert a.m.serving() and GROUP not in leases.leases  # nobody would ever release it: deleted


def test_a_member_whose_lease_vanishes_expires_a_full_expiry_after_its_last_renewal_was_seen() -> None:
    # A stopping member deletes its Lease even when it could not release everything: what it still names
    # waits out the expiry, counted as for a silent member from its record's last change.
    leases = FakeLeases()
    a, b = Replica(leases, "a"), Replica(leases, "b")
    for _ in range(2):
        a.m.refresh()
        b.m.refresh()
        b.advance(60)  # long after b's first listing
    a.advance(60)
    a.m.refresh()  # renewed; b sees this record at its next listing, 3 s later
    b.advance(3)
    b.m.refresh()
    a.m.stop()
    b.advance(5)
    b.m.refresh()
    assert "a" not in b.members() and not b.m.expired("a")
    b.advance(14.9)  # 19.9 s since b saw a's last renewal
    assert not b.m.expired("a")
    b.advance(0.2)
    assert b.m.expired("a")


def test_a_member_deleted_as_dead_keeps_the_expiry_of_its_silence() -> None:
    # Its Lease gone does not restart the count: the survivor that saw it renew last counts from there.
    leases = FakeLeases()
    a, b = Replica(leases, "a"), Replica(leases, "b")
    for r in (a, b, a, b):
        r.m.refresh()
    for _ in range(3):
        b.advance(5)
        b.m.refresh()
    assert member_lease_name(GROUP, "a") not in leases.leases and not b.m.expired("a")
    b.advance(5)
    b.m.refresh()  # a's Lease gone from the listing now
    assert b.m.expired("a")  # 20 s since b saw its record change


def test_a_member_whose_lease_lapsed_fences_its_earlier_cycles_and_serves_again_from_its_second_listing() -> (
    None
):
    leases = FakeLeases()
    a, b = Replica(leases, "a"), Replica(leases, "b")
    for r in (a, b, a):
        r.m.refresh()
    uid = next(u for u in (f"uid-{i}" for i in range(100)) if a.m.ring().owner(u) == "a")
    term = a.m.term()
    assert a.m.serving() and a.m.may_write(uid, term)
    a.advance(30)  # stopped (SIGSTOP) past its duration; b may have taken its policies meanwhile
    b.advance(30)
    b.m.refresh()
    assert not a.m.may_write(uid, term) and b.m.expired("a")
    a.m.refresh()  # resumed: renewed at once, but a cycle begun before the stop never writes
    assert a.m.term() == term + 1 and a.m.ready() and not a.m.serving()
    assert not a.m.may_write(uid, term) and not a.m.may_write(uid, term + 1)
    a.advance(5)
    a.m.refresh()
    assert a.m.serving() and a.m.may_write(uid, term + 1) and not a.m.may_write(uid, term)
    assert a.changes[-1] == (frozenset(), frozenset({"a", "b"}))  # every policy looked at again
    a.advance(5)
    a.m.refresh()  # renewed on time: the same term
    assert a.m.term() == term + 1
