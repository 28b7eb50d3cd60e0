"""The operator's long-lived parts, built once at startup from the configuration."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes import client, config

from . import model, package_version
from .config import OperatorConfig
from .cycle import CycleResult, Reconciler
from .engine.claims import PolicyId
from .heap import HeapTrimmer
from .kube.dryrun import dry_run_call
from .kube.events import EventRecorder
from .kube.hpa import HpaClient
from .kube.leader import LeaseElector
from .kube.pods import PodCosts
from .kube.targets import ReplicaClient, transport_for
from .kube.watched import Watched, WatchedObjects
from .kube.workers import WorkerDeployments
from .memory import PolicyMemory
from .metrics.prometheus import PrometheusReader
from .opmetrics import OperatorMetrics
from .policy import PolicyObject

log = logging.getLogger("scalekeeper.runtime")


def kube_api(pool_size: int, identity: str = "") -> client.ApiClient:
    """A client of the API server. Given this replica's `identity`, its writes carry the field manager
    `scalekeeper-<identity>` (the API server takes it from the User-Agent when a write names none), so an
    object's managedFields tell which replica wrote what."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = pool_size
    api = client.ApiClient(cfg)
    if identity:
        api.user_agent = f"{field_manager(identity)}/{package_version()}"
    return api


def field_manager(identity: str) -> str:
    # The API server keeps at most 128 characters of a field manager's name.
    return f"scalekeeper-{identity}"[:128]


def prometheus_reader(cfg: OperatorConfig) -> PrometheusReader:
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
        cfg.prometheus_url, headers=headers, verify=verify, timeout=cfg.prometheus_timeout_seconds
    )


class Runtime:
    def __init__(self, cfg: OperatorConfig, api: client.ApiClient | None = None) -> None:
        self.cfg = cfg
        self.api = api or kube_api(cfg.max_workers + 4, cfg.identity)
        self.metrics = OperatorMetrics()
        self.events = EventRecorder(self.api)
        self._objects = client.CustomObjectsApi(self.api)
        self.reconciler = Reconciler(
            ReplicaClient(transport_for(self.api)),
            HpaClient(self.api),
            WorkerDeployments(self.api),
            PodCosts(self.api),
            prometheus_reader(cfg),
            self.metrics,
            status_refresh_seconds=cfg.status_refresh_seconds,
            log_every_decision=cfg.log_decisions == "all",
            dry_run=dry_run_call(self.api),
        )
        # The informers stream on connections of their own: a long watch must not hold one of the pool the
        # cycles' reads and writes share.
        self.watches = WatchedObjects(client.ApiClient(self.api.configuration), cfg.namespaces)
        self.heap = HeapTrimmer(cfg.heap_trim_seconds)
        self.started = time.monotonic()
        self.elector: LeaseElector | None = None
        if cfg.leader_election:
            self.elector = LeaseElector(
                self.api,
                cfg.lease_name,
                cfg.lease_namespace,
                cfg.identity,
                cfg.lease_seconds,
                on_change=lambda leader: self.metrics.leader.set(1 if leader else 0),
            )

    def start(self) -> None:
        self.watches.start()
        self.heap.start()
        if self.cfg.metrics_port:
            self.metrics.serve(self.cfg.metrics_port, ready=self.watches.ready)
        if self.elector is not None:
            self.elector.start()
        else:
            self.metrics.leader.set(1)

    def stop(self) -> None:
        self.watches.stop()
        self.heap.stop()
        if self.elector is not None:
            self.elector.stop()

    def first_cycle_delay(self, uid: str, interval: float) -> float:
        return first_cycle_delay(uid, interval, time.monotonic() - self.started)

    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader()

    def cycle(
        self,
        body: dict[str, Any],
        memory: PolicyMemory,
        claimants: Mapping[str, Iterable[PolicyId]] | None = None,
        watched: Watched | None = None,
    ) -> CycleResult:
        policy = PolicyObject.from_body(body)

        def emit(type_: str, reason: str, message: str) -> None:
            posted = self.events.post(policy.namespace, policy.name, policy.uid, type_, reason, message)
            self.metrics.write("Event", "posted" if posted else "error")

        def write_status(status: dict[str, Any]) -> None:
            self._objects.patch_namespaced_custom_object_status(
                model.GROUP, model.VERSION, policy.namespace, model.PLURAL, policy.name, {"status": status}
            )

        return self.reconciler.run(policy, memory, emit, write_status, claimants, watched)


def first_cycle_delay(uid: str, interval: float, since_start: float) -> float:
    """How long a policy's first cycle waits. At a start every existing policy comes due at once;
    each waits a fixed share of its interval (from its uid) so their cycles, and the status writes and
    API reads they make, spread over the interval instead of landing together every interval. A policy
    created later is sized at once."""
    if since_start >= interval:
        return 0.0
    share = int.from_bytes(hashlib.blake2b(uid.encode(), digest_size=4).digest()) / 2**32
    return max(0.0, share * interval - since_start)
