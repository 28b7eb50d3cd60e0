"""The operator's long-lived parts, built once at startup from the configuration."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from . import model, package_version
from .config import OperatorConfig
from .cycle import CycleResult, Reconciler
from .engine.claims import PolicyId
from .engine.handover import Step, next_step
from .heap import HeapTrimmer
from .kube.dryrun import dry_run_call
from .kube.events import EventRecorder
from .kube.hpa import HpaClient
from .kube.membership import Membership
from .kube.pods import PodCosts
from .kube.targets import ReplicaClient, transport_for
from .kube.watched import Watched, WatchedObjects
from .kube.workers import WorkerDeployments
from .memory import PolicyMemory
from .metrics.batching import Limits
from .metrics.prometheus import PrometheusReader
from .opmetrics import OperatorMetrics
from .policy import PolicyObject, claims_of

log = logging.getLogger("scalekeeper.runtime")


def kube_api(pool_size: int, identity: str = "", timeout: float | None = None) -> client.ApiClient:
    """A client of the API server. Given this replica's `identity`, its writes carry the field manager
    `scalekeeper-<identity>` (the API server takes it from the User-Agent when a write names none), so an
    object's managedFields tell which replica wrote what. Given a `timeout`, every request that names
    none ends within it: a handover waits out a lost member's writes for that long, no longer."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = pool_size
    api = client.ApiClient(cfg)
    if identity:
        api.user_agent = f"{field_manager(identity)}/{package_version()}"
    if timeout is not None:
        _default_timeout(api, timeout)
    return api


def _default_timeout(api: client.ApiClient, seconds: float) -> None:
    # The client has no default timeout (a request naming none waits forever) and the generated API
    # methods take one only per call: its REST client's single entry point gets one here instead.
    request = api.rest_client.request

    def timed(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        return request(*args, _request_timeout=_request_timeout or seconds, **kwargs)

    api.rest_client.request = timed


def field_manager(identity: str) -> str:
    # The API server keeps at most 128 characters of a field manager's name.
    return f"scalekeeper-{identity}"[:128]


def prometheus_reader(cfg: OperatorConfig, metrics: OperatorMetrics) -> PrometheusReader:
    headers: dict[str, str] = {}
    if cfg.prometheus_bearer_token_file:
        with open(cfg.prometheus_bearer_token_file) as f:
            headers["Authorization"] = f"Bearer {f.read().strip()}"
    verify: bool | str = True
    if cfg.prometheus_ca_file:
        verify = cfg.prometheus_ca_file
    if cfg.prometheus_insecure_skip_verify:
        verify = False
    return PrometheusReader(
        cfg.prometheus_url,
        headers=headers,
        verify=verify,
        timeout=cfg.prometheus_timeout_seconds,
        window=cfg.prometheus_batch_window_seconds,
        limits=Limits(cfg.prometheus_batch_max_queries, cfg.prometheus_batch_max_bytes),
        # The scheduler runs at most this many cycles at once: once all read, no other can join them.
        most_reads=cfg.max_workers,
        on_request=metrics.prometheus_request,
    )


class Runtime:
    def __init__(self, cfg: OperatorConfig, api: client.ApiClient | None = None) -> None:
        self.cfg = cfg
        self.api = api or kube_api(cfg.max_workers + 4, cfg.identity, cfg.api_timeout_seconds)
        self.metrics = OperatorMetrics()
        self.events = EventRecorder(self.api)
        self._objects = client.CustomObjectsApi(self.api)
        self.reconciler = Reconciler(
            ReplicaClient(transport_for(self.api)),
            HpaClient(self.api),
            WorkerDeployments(self.api),
            PodCosts(self.api),
            prometheus_reader(cfg, self.metrics),
            self.metrics,
            status_refresh_seconds=cfg.status_refresh_seconds,
            log_every_decision=cfg.log_decisions == "all",
            dry_run=dry_run_call(self.api),
        )
        # The informers stream on connections of their own: a long watch must not hold one of the pool the
        # cycles' reads and writes share.
        self.watches = WatchedObjects(client.ApiClient(self.api.configuration), cfg.namespaces, claims_of)
        self.heap = HeapTrimmer(cfg.heap_trim_seconds)
        self.started = time.monotonic()
        self.metrics.serving.set_function(lambda: 1.0 if self.serving() else 0.0)
        self.membership: Membership | None = None
        if cfg.sharding:
            self.membership = Membership(
                self.api,
                cfg.lease_name,
                cfg.lease_namespace,
                cfg.identity,
                cfg.lease_seconds,
                cfg.api_timeout_seconds,
            )

    def start(self) -> None:
        self.watches.start()
        self.heap.start()
        if self.cfg.metrics_port:
            self.metrics.serve(self.cfg.metrics_port, ready=self.ready)
        if self.membership is not None:
            self.membership.start()

    def stop(self) -> None:
        """After the scheduler has released its policies: leave the ring, stop watching."""
        if self.membership is not None:
            self.membership.stop()
        self.watches.stop()
        self.heap.stop()

    def ready(self) -> bool:
        """Every watch has listed and the ring is known."""
        return self.watches.ready() and (self.membership is None or self.membership.ready())

    def first_cycle_delay(self, uid: str, interval: float) -> float:
        return first_cycle_delay(uid, interval, time.monotonic() - self.started)

    def serving(self) -> bool:
        return self.membership is None or self.membership.serving()

    def step(self, uid: str, served_by: str) -> Step:
        """What to do with this policy now (engine/handover.py); always serve it when not sharding."""
        if self.membership is None:
            return Step.SERVE
        m = self.membership
        owner = m.ring().owner(uid)
        return next_step(
            m.identity, owner, served_by, self.serving(), bool(served_by) and m.expired(served_by)
        )

    def may_write(self, uid: str, term: int) -> bool:
        """Checked before each write of a cycle begun in `term`: this replica still serves the policy, and
        its Lease has not lapsed since the cycle began (its observations may be a stop old)."""
        return self.membership is None or self.membership.may_write(uid, term)

    def hand_over(self, body: dict[str, Any], served_by: str) -> dict[str, Any] | None:
        """Write `status.servedBy` at the resourceVersion of `body`; the policy as written, or None when it
        changed since (someone else claimed it, or it was edited: looked at again at its next due time)."""
        meta = body["metadata"]
        patch = {
            "metadata": {"resourceVersion": meta.get("resourceVersion")},
            "status": {"servedBy": served_by},
        }
        try:
            written: dict[str, Any] = self._objects.patch_namespaced_custom_object_status(
                model.GROUP, model.VERSION, meta["namespace"], model.PLURAL, meta["name"], patch
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                self.metrics.handovers.labels("stale").inc()
                return None if served_by else self._release_current(meta)
            raise
        self.metrics.handovers.labels("claim" if served_by else "release").inc()
        log.info(
            "policy claimed" if served_by else "policy released",
            extra={"policy": f"{meta['namespace']}/{meta['name']}", "identity": self.cfg.identity},
        )
        return written

    def drop_finalizer(self, namespace: str, name: str, finalizer: str) -> None:
        """Remove `finalizer` from the policy, at the resourceVersion read (another writer's change to its
        finalizers in between: read again)."""
        for _ in range(5):
            try:
                current = self._objects.get_namespaced_custom_object(
                    model.GROUP, model.VERSION, namespace, model.PLURAL, name
                )
                meta = current["metadata"]
                held = list(meta.get("finalizers") or ())
                if finalizer not in held:
                    return
                kept = [f for f in held if f != finalizer]
                self._objects.patch_namespaced_custom_object(
                    model.GROUP,
                    model.VERSION,
                    namespace,
                    model.PLURAL,
                    name,
                    {"metadata": {"finalizers": kept, "resourceVersion": meta["resourceVersion"]}},
                )
                log.info(
                    "legacy finalizer removed",
                    extra={"policy": f"{namespace}/{name}", "finalizer": finalizer},
                )
                return
            except ApiException as exc:
                if exc.status == 404:
                    return
                if exc.status != 409:
                    log.warning(
                        "removing the legacy finalizer failed",
                        extra={"policy": f"{namespace}/{name}", "status": exc.status, "reason": exc.reason},
                    )
                    return

    def _release_current(self, meta: dict[str, Any]) -> dict[str, Any] | None:
        """A release refused as stale (our own status write, or an edit, came in between): released at the
        current version if the policy still names this replica, so the next server need not wait out our
        Lease."""
        current = self._current_if_served(meta["namespace"], meta["name"])
        return None if current is None else self.hand_over(current, "")

    def _current_if_served(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The policy as it is now, if its status still names this replica; None if not, or gone."""
        try:
            current: dict[str, Any] = self._objects.get_namespaced_custom_object(
                model.GROUP, model.VERSION, namespace, model.PLURAL, name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        if (current.get("status") or {}).get("servedBy") != self.cfg.identity:
            return None
        return current

    def cycle(
        self,
        body: dict[str, Any],
        memory: PolicyMemory,
        claimants: Mapping[str, Iterable[PolicyId]] | None = None,
        watched: Watched | None = None,
    ) -> CycleResult:
        """One cycle of the policy `body` (the scheduler's compact copy). Its status is written at the
        resourceVersion the body has, so the write of a replica that no longer serves the policy (its
        servedBy changed since) is refused; the version written goes back into the body for the next one."""
        policy = PolicyObject.from_body(body)
        meta = body["metadata"]
        term = 0 if self.membership is None else self.membership.term()

        def emit(type_: str, reason: str, message: str) -> None:
            posted = self.events.post(policy.namespace, policy.name, policy.uid, type_, reason, message)
            self.metrics.write("Event", "posted" if posted else "error")

        def write_status(status: dict[str, Any]) -> None:
            patch: dict[str, Any] = {"status": status}
            if self.membership is not None:
                patch["metadata"] = {"resourceVersion": meta.get("resourceVersion")}
            try:
                written = self._objects.patch_namespaced_custom_object_status(
                    model.GROUP, model.VERSION, policy.namespace, model.PLURAL, policy.name, patch
                )
            except ApiException as exc:
                if exc.status == 409:
                    self._catch_up(policy, meta)
                raise
            # Only the resourceVersion is changed in place: whatever a watch event brings replaces the
            # whole body, so a version from here never overwrites a newer one.
            meta["resourceVersion"] = (written.get("metadata") or {}).get("resourceVersion")

        return self.reconciler.run(
            policy,
            memory,
            emit,
            write_status,
            claimants,
            watched,
            may_write=lambda: self.may_write(policy.uid, term),
        )

    def _catch_up(self, policy: PolicyObject, meta: dict[str, Any]) -> None:
        """After a status write refused as stale: when the policy still names this replica, its current
        resourceVersion goes into the body for the next cycle. The watch brings it too, but a body it
        delivered late (older than our own last write) would otherwise leave every next write stale until
        something else changed the policy (seen in CI: four minutes of refused writes)."""
        try:
            current = self._current_if_served(policy.namespace, policy.name)
        except ApiException:
            return  # the 409 stands; the watch brings the newer body
        if current is not None:
            meta["resourceVersion"] = (current.get("metadata") or {}).get("resourceVersion")


def first_cycle_delay(uid: str, interval: float, since_start: float) -> float:
    """How long a policy's first cycle waits. At a start every existing policy comes due at once;
    each waits a fixed share of its interval (from its uid) so their cycles, and the status writes and
    API reads they make, spread over the interval instead of landing together every interval. A policy
    created later is sized at once."""
    if since_start >= interval:
        return 0.0
    share = int.from_bytes(hashlib.blake2b(uid.encode(), digest_size=4).digest()) / 2**32
    return max(0.0, share * interval - since_start)
