"""The operator replicas of one install, each renewing a member Lease of its own: who is live, and the ring.

Every replica renews the Lease `<group>-<identity>` (labelled with the group) in the release namespace and
lists the group's Leases at each renewal, and at once when a watch sees one created or deleted (a join, or
a replica leaving on SIGTERM). A member is live while its Lease record keeps changing: unchanged for the
Lease's duration on this replica's monotonic clock (from when it first saw that record), it is dead,
leaves the ring, and its Lease is deleted (at the version seen, so a renewal in between keeps it): a
replica joining later must not count it live for a duration of its own. Views of the members may differ
between replicas for up to a renew period; engine/handover.py is what keeps that safe.

A Lease named `<group>` itself is the leader Lease of the active/passive releases before sharding: while a
replica of such a release holds and renews it, no member serves anything, so an upgrade never has an old
leader and a new member sizing the same workloads.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from ..engine.ring import HashRing
from .lease import LeaseRecords, OwnLease

log = logging.getLogger("scalekeeper.membership")

GROUP_LABEL = "scalekeeper.dev/group"


def member_lease_name(group: str, identity: str) -> str:
    """A valid object name (lowercase DNS subdomain, at most 253 characters) for a member's Lease."""
    name = re.sub(r"[^a-z0-9.-]+", "-", f"{group}-{identity}".lower()).strip("-.")
    return name[:253].rstrip("-.")


class Membership:
    def __init__(
        self,
        api: client.ApiClient,
        group: str,
        namespace: str,
        identity: str,
        lease_seconds: int,
        request_timeout: float,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        clock: Callable[[], float] = time.time,
        leases: Any = None,
    ) -> None:
        self._leases = leases or client.CoordinationV1Api(api)
        self._raw = api
        self.group, self.namespace, self.identity = group, namespace, identity
        self.lease_seconds = lease_seconds
        # A member unrenewed for this long cannot still be writing: its own check stops it at 2/3 of its
        # duration, and a write it had started by then ends within one request timeout.
        self.expiry = lease_seconds + request_timeout
        self._monotonic = monotonic
        self.own = OwnLease(
            api,
            member_lease_name(group, identity),
            namespace,
            identity,
            lease_seconds,
            {GROUP_LABEL: group},
            clock=clock,
            monotonic=monotonic,
            leases=self._leases,
        )
        self._records = LeaseRecords(monotonic)
        self._lock = threading.Lock()
        self._ring = HashRing(())
        # Members by identity -> seconds their Lease had gone unchanged at the last listing (at `_listed_at`).
        self._unchanged: dict[str, float] = {}
        self._listed_at: float | None = None
        self._first_listed_at: float | None = None
        self._listings = 0
        # Listings since our Lease last lapsed (went unrenewed past 2/3 of its duration), and how many
        # times it has: a cycle begun in an earlier term never writes (runtime.py).
        self._term_listings = 0
        self._term = 0
        # Members whose Lease was listed once and is gone now -> when we last saw its record change: whether
        # it left on its own or was found dead, it may write until then plus its expiry, no longer.
        self._gone_changed_at: dict[str, float] = {}
        self._legacy_held = False
        self._stop = threading.Event()
        # Set by the watch when a member's Lease is created or deleted: the loop lists at once.
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.on_ring_change: Callable[[HashRing, HashRing], None] | None = None

    # ------------------------------------------------------------------ what the scheduler asks

    def serving(self) -> bool:
        """This replica may write: its own Lease renewed within 2/3 of its duration, the members listed
        twice since it last lapsed, and no replica of an active/passive release holding the old leader
        Lease."""
        with self._lock:
            return self.own.renewed() and self._term_listings >= 2 and not self._legacy_held

    def term(self) -> int:
        """How many times our Lease has lapsed: changed, every cycle begun before is fenced."""
        with self._lock:
            return self._term

    def ready(self) -> bool:
        """The ring is known: the group's Leases listed twice, a renew period apart. Replicas starting
        together may not see each other's Leases at their first listing, but do at the second: serving
        from the first would have each claim every policy, then hand most back."""
        return self._listings >= 2

    def may_write(self, uid: str, term: int) -> bool:
        """A cycle begun in `term` may write for the policy `uid`: we serve, our Lease has not lapsed since
        (the cycle's observations may be a stop old), and the ring still gives us the policy."""
        return self.serving() and self.term() == term and self.ring().owner(uid) == self.identity

    def ring(self) -> HashRing:
        with self._lock:
            return self._ring

    def expired(self, identity: str) -> bool:
        """Whether the member `identity` can no longer be writing: its Lease unchanged (or absent) for its
        duration plus the longest request timeout on our clock. Absent counts from our first listing."""
        with self._lock:
            if self._listed_at is None or self._first_listed_at is None:
                return False
            now = self._monotonic()
            unchanged = self._unchanged.get(identity)
            if unchanged is None:
                # Gone from the listing: counted from its record's last change we saw (it wrote only while
                # renewed), or, never seen, from our first listing.
                since = self._gone_changed_at.get(identity, self._first_listed_at)
                return now - since >= self.expiry
            return unchanged + (now - self._listed_at) >= self.expiry

    # ------------------------------------------------------------------ the loop

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="membership", daemon=True)
        self._thread.start()
        threading.Thread(target=self._watch, name="membership-watch", daemon=True).start()

    def stop(self) -> None:
        """Stop renewing and delete our own Lease, so the others see us leave at once."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self.own.delete()
        except ApiException as exc:
            log.warning("deleting member lease %s/%s failed: %s", self.namespace, self.own.name, exc)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.refresh()
            except Exception as exc:  # the API server restarting must not end the membership
                log.warning("membership of %s/%s: %s", self.namespace, self.group, exc)
            with self._lock:
                joining = self._term_listings < 2
            # Joining, the second listing comes a full renew period after the first (see ready()).
            (self._stop if joining else self._wake).wait(self.lease_seconds / 3)

    def _watch(self) -> None:
        """Wake the loop when a member's Lease is created (a join) or deleted (a leave: a stopping replica
        deletes its own after releasing its policies), so the ring follows in a round trip rather than at
        the next renew period. Renewals are not acted on: only the listing's clock tells a quiet member."""
        # A connection of its own: a long watch must not hold one of the pool the cycles share.
        leases = client.CoordinationV1Api(client.ApiClient(self._raw.configuration))
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    leases.list_namespaced_lease,
                    self.namespace,
                    label_selector=f"{GROUP_LABEL}={self.group}",
                    timeout_seconds=300,
                    _request_timeout=330,
                ):
                    if self._stop.is_set():
                        return
                    if event["type"] in ("ADDED", "DELETED"):
                        self._wake.set()
            except Exception as exc:  # the listing every renew period goes on without it
                log.debug("watching member leases of %s/%s: %s", self.namespace, self.group, exc)
                self._stop.wait(self.lease_seconds / 3)

    def refresh(self) -> None:
        """One round: renew our Lease, list the group's, recompute the ring, delete dead members'."""
        if self._listings and not self.own.renewed():
            # Stopped or cut off past 2/3 of our duration: the others may have counted us expired and taken
            # our policies. Marked before renewing, so no cycle begun before it writes once we renew; we
            # serve again as a newcomer does, from our second listing, by when the policies' servedBy
            # written meanwhile has reached the scheduler.
            with self._lock:
                self._term += 1
                self._term_listings = 0
            log.warning("member lease lapsed: rejoining", extra={"identity": self.identity})
        self.own.renew()
        listed_at = self._monotonic()
        items = self._raw.sanitize_for_serialization(
            self._leases.list_namespaced_lease(
                self.namespace, label_selector=f"{GROUP_LABEL}={self.group}", _request_timeout=10
            )
        ).get("items", [])
        unchanged: dict[str, float] = {}
        dead: list[dict[str, Any]] = []
        for lease in items:
            name = lease["metadata"]["name"]
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            if not holder:
                continue
            quiet = 0.0 if holder == self.identity else self._records.unchanged_for(name, spec)
            unchanged[holder] = quiet
            if quiet >= self.lease_seconds:
                dead.append(lease)
        self._records.forget({lease["metadata"]["name"] for lease in items} | {self.group})
        legacy = self._legacy_lease_held()
        live = {m for m, quiet in unchanged.items() if quiet < self.lease_seconds}
        if self.own.renewed():
            live.add(self.identity)
        with self._lock:
            before = self._ring
            if self._listed_at is not None:
                for gone in set(self._unchanged) - set(unchanged):
                    self._gone_changed_at.setdefault(gone, self._listed_at - self._unchanged[gone])
            for back in set(unchanged) & set(self._gone_changed_at):
                del self._gone_changed_at[back]
            self._unchanged, self._listed_at, self._legacy_held = unchanged, listed_at, legacy
            if self._first_listed_at is None:
                self._first_listed_at = listed_at
            self._listings += 1
            self._term_listings += 1
            if live != before.members:
                self._ring = HashRing(live)
            after = self._ring
            if self._term_listings == 2:
                before = HashRing(())  # ready now: every policy has its owner for the first time
        if after is not before:
            log.info("members changed", extra={"members": sorted(after.members), "identity": self.identity})
            if self.on_ring_change is not None:
                self.on_ring_change(before, after)
        for lease in dead:
            self._delete_dead(lease)

    def _legacy_lease_held(self) -> bool:
        try:
            lease = self._raw.sanitize_for_serialization(
                self._leases.read_namespaced_lease(self.group, self.namespace, _request_timeout=10)
            )
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        spec = lease.get("spec") or {}
        if not spec.get("holderIdentity"):
            return False
        if self._records.unchanged_for(self.group, spec) < self.expiry:
            return True
        # Its holder is gone (its pod deleted without releasing it): nobody will release it now.
        self._delete_dead(lease)
        return False

    def _delete_dead(self, lease: dict[str, Any]) -> None:
        meta = lease["metadata"]
        options = client.V1DeleteOptions(
            preconditions=client.V1Preconditions(resource_version=meta.get("resourceVersion"))
        )
        try:
            self._leases.delete_namespaced_lease(
                meta["name"], self.namespace, body=options, _request_timeout=10
            )
            log.info("deleted a dead member's lease", extra={"lease": meta["name"]})
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise
