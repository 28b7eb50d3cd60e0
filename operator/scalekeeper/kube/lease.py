"""coordination.k8s.io Leases: a replica's own, renewed; and how long any Lease has gone unrenewed.

How long another replica's Lease has gone unrenewed is measured on our own monotonic clock, from when we
first saw its current record (as client-go's leader election does): its `renewTime` is another machine's
wall clock, and comparing it with ours would let a skewed clock declare a live replica dead. A replica
that cannot renew its own Lease in time knows it on its own (from when its last successful renewal began,
on its monotonic clock, not from the Lease) and stops writing before anyone may count it dead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException


def _micro(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_record(spec: Mapping[str, Any]) -> tuple[Any, ...]:
    """What changes when a Lease is renewed or changes hands."""
    return (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))


class LeaseRecords:
    """When each Lease's record was last seen to change, on our monotonic clock."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._seen: dict[str, tuple[tuple[Any, ...], float]] = {}

    def unchanged_for(self, name: str, spec: Mapping[str, Any]) -> float:
        """Seconds since this Lease's record was first seen as it is now (0 the first time)."""
        record, now = lease_record(spec), self._monotonic()
        seen = self._seen.get(name)
        if seen is None or seen[0] != record:
            self._seen[name] = (record, now)
            return 0.0
        return now - seen[1]

    def forget(self, keep: set[str]) -> None:
        for name in set(self._seen) - keep:
            del self._seen[name]


class OwnLease:
    """A Lease only this replica holds: created the first time, renewed at each `renew()`."""

    def __init__(
        self,
        api: client.ApiClient,
        name: str,
        namespace: str,
        identity: str,
        lease_seconds: int,
        labels: Mapping[str, str],
        *,
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
        self._labels = dict(labels)
        self._clock = clock
        self._monotonic = monotonic
        self._renewed_at: float | None = None
        # A call that hangs (an API server restarting) must not outlive the lease it is renewing.
        self._timeout = (3.0, max(1.0, lease_seconds / 3))

    def renewed(self) -> bool:
        """Renewed recently enough to write: within 2/3 of the duration since the renewal was asked for,
        a renew period before anyone else may count the Lease unrenewed."""
        renewed = self._renewed_at
        return renewed is not None and self._monotonic() - renewed < self.lease_seconds * 2 / 3

    def renew(self) -> None:
        # Taken before the request: a renewal counts from when it was asked for, never from when it returned.
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
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": self._labels},
                "spec": self._spec(now, now),
            }
            self._leases.create_namespaced_lease(self.namespace, body, _request_timeout=self._timeout)
            self._renewed_at = started
            return
        spec = lease.get("spec") or {}
        acquired = spec.get("acquireTime") if spec.get("holderIdentity") == self.identity else None
        lease["spec"] = self._spec(now, now)
        if acquired:
            lease["spec"]["acquireTime"] = acquired
        self._leases.replace_namespaced_lease(
            self.name, self.namespace, lease, _request_timeout=self._timeout
        )
        self._renewed_at = started

    def delete(self) -> None:
        self._renewed_at = None
        try:
            self._leases.delete_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def _spec(self, acquired: float, renewed: float) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self.lease_seconds,
            "acquireTime": _micro(acquired),
            "renewTime": _micro(renewed),
        }
