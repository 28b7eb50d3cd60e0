"""Leader election on a coordination.k8s.io Lease: several operator replicas, one acting at a time.

The holder renews the Lease every third of its duration; a follower takes it over only once it has seen the
Lease unchanged for the whole duration on its own monotonic clock, counted from when it first saw the
current record (as client-go's leader election does): the holder's `renewTime` is another machine's wall
clock, and comparing it with ours would let a skewed clock take over a live holder's Lease. A replica that
cannot renew in time stops acting on its own before anyone else may start (it checks when its last
successful renewal began, on its monotonic clock, not the Lease).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("scalekeeper.leader")


def _micro(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    text = str(value).replace("Z", "+00:00")
    return datetime.fromisoformat(text).timestamp()


class LeaseElector:
    def __init__(
        self,
        api: client.ApiClient,
        name: str,
        namespace: str,
        identity: str,
        lease_seconds: int = 15,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        leases: Any = None,
    ) -> None:
        # `leases`: the CoordinationV1Api to call (a fake API server's in unit tests). `clock` only writes
        # the Lease's times, for people to read; every decision is taken on `monotonic`.
        self._leases = leases or client.CoordinationV1Api(api)
        self._raw = api
        self.name, self.namespace, self.identity = name, namespace, identity
        self.lease_seconds = lease_seconds
        self._on_change = on_change
        self._clock = clock
        self._monotonic = monotonic
        self._renewed_at: float | None = None
        # The Lease record last seen (holder, renewTime, transitions) and when, on our monotonic clock, it
        # was first seen: another holder's Lease expires `duration` after that, whatever its renewTime says.
        self._observed: tuple[Any, ...] | None = None
        self._observed_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_leader = False
        # A call that hangs (an API server restarting) must not outlive the lease it is renewing.
        self._timeout = (3.0, max(1.0, lease_seconds / 3))

    def is_leader(self) -> bool:
        # Margin of one renew period: stop acting before a follower may legally take over.
        renewed = self._renewed_at
        return renewed is not None and self._monotonic() - renewed < self.lease_seconds * 2 / 3

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="lease-elector", daemon=True)
        self._thread.start()

    def stop(self, release: bool = True) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if release and self.is_leader():
            self._release()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.try_acquire_or_renew()
            except Exception as exc:  # the API server restarting must not kill the elector
                log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            leader = self.is_leader()
            if leader != self._was_leader:
                self._was_leader = leader
                log.info("leadership changed", extra={"leader": leader, "identity": self.identity})
                if self._on_change:
                    self._on_change(leader)
            self._stop.wait(self.lease_seconds / 3)

    def try_acquire_or_renew(self) -> bool:
        # Taken before the read: a renewal counts from when it was asked for, never from when it returned.
        started, now = self._monotonic(), self._clock()
        try:
            lease = self._raw.sanitize_for_serialization(
                self._leases.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout)
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, now, transitions=0),
            }
            try:
                self._leases.create_namespaced_lease(self.namespace, body, _request_timeout=self._timeout)
            except ApiException as create_exc:
                if create_exc.status == 409:
                    return False
                raise
            self._renewed_at = started
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        record = (holder, spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self._observed:
            self._observed, self._observed_at = record, self._monotonic()
        duration = spec.get("leaseDurationSeconds") or self.lease_seconds
        if holder not in (None, "", self.identity) and self._monotonic() - self._observed_at < duration:
            return False
        acquire = _parse(spec.get("acquireTime")) if holder == self.identity else now
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        lease["spec"] = self._spec(acquire or now, now, transitions)
        try:
            self._leases.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 409:  # another replica won the race for this renewal
                return False
            raise
        self._renewed_at = started
        return True

    def _spec(self, acquired: float, renewed: float, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": _micro(acquired),
            "renewTime": _micro(renewed),
            "leaseTransitions": transitions,
        }

    def _release(self) -> None:
        try:
            lease = self._raw.sanitize_for_serialization(
                self._leases.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout)
            )
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") == self.identity:
                # No holder: the next replica to look takes it at once instead of waiting out the duration.
                lease["spec"] = {
                    "leaseDurationSeconds": self.lease_seconds,
                    "leaseTransitions": spec.get("leaseTransitions") or 0,
                }
                self._leases.replace_namespaced_lease(
                    self.name, self.namespace, lease, _request_timeout=self._timeout
                )
        except ApiException as exc:
            log.warning("releasing lease %s/%s failed: %s", self.namespace, self.name, exc)
        self._renewed_at = None
