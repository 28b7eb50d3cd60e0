"""What the sharding tests share: a namespace's policies and who serves them, targets whose pods never run,
and a watch of who writes each target when (from managedFields)."""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from kubernetes import client, watch
from urllib3.exceptions import ProtocolError

from scalekeeper.engine.ring import HashRing

from .conftest import Cluster
from .kube_helpers import GROUP, PLURAL, VERSION, apply_policy, deployment

# A real series with a steady value (one Prometheus): readReplicas = ceil(1 / perReplica).
QUERY = "sum(prometheus_build_info)"
# The tests' member Lease duration: short, so a takeover after a kill comes within the test's waits.
LEASE_SECONDS = 6


class Fleet:
    """`size` read-replica policies r<i> on Deployments db<i> of one namespace."""

    def __init__(self, cluster: Cluster, namespace: str, size: int) -> None:
        self.cluster, self.namespace, self.size = cluster, namespace, size
        self.objects = client.CustomObjectsApi(cluster.api)
        self.apps = client.AppsV1Api(cluster.api)

    def create_targets(self, names: list[str]) -> None:
        for name in names:
            body = deployment(name, 1, {"app": name}, self.cluster.operator_image)
            # No node has this label: the pods never run, the replicas are only numbers.
            body["spec"]["template"]["spec"]["nodeSelector"] = {"scalekeeper-test": "no-such-node"}
            self.apps.create_namespaced_deployment(self.namespace, body)

    def set_load(self, per_replica: float) -> None:
        for i in range(self.size):
            apply_policy(self.cluster, self.namespace, f"r{i}", policy_spec(f"db{i}", per_replica))

    def served(self) -> dict[str, tuple[str, str]]:
        """Each policy's uid -> (name, status.servedBy)."""
        items = self.objects.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)["items"]
        return {
            p["metadata"]["uid"]: (p["metadata"]["name"], (p.get("status") or {}).get("servedBy", ""))
            for p in items
        }

    def settled(self, members: set[str]) -> bool:
        """Every policy is served by the member the ring of `members` names."""
        ring = HashRing(members)
        return all(by == ring.owner(uid) for uid, (_, by) in self.served().items())

    def sizes(self) -> set[int]:
        """The replicas of the fleet's targets."""
        deployments = self.apps.list_namespaced_deployment(self.namespace).items
        return {d.spec.replicas for d in deployments if d.metadata.name.startswith("db")}

    def policy_of(self) -> dict[str, str]:
        """Each target -> the policy sizing it."""
        return {f"db{i}": f"r{i}" for i in range(self.size)}

    def busiest(self, members: set[str]) -> str:
        """The member serving the most policies."""
        by_member = [by for _, by in self.served().values()]
        return max(sorted(members), key=by_member.count)


def policy_spec(target: str, per_replica: float) -> dict[str, Any]:
    return {
        "intervalSeconds": 1,
        "readReplicas": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": 1,
            "maxReplicas": 6,
            "metric": {"query": QUERY, "perReplica": per_replica},
        },
    }


class Writers:
    """Every write of a target's replicas in the namespace, as (when, target, replicas, writer, revision),
    and every release of a policy (its servedBy emptied), as (revision, policy), from two watches. The
    writer is the field manager owning `spec.replicas` after the change: the API server records no time for
    a `/scale` write in managedFields, so when is when the watch saw it (on this clock). The revision (the
    object's resourceVersion: one etcd revision counter for every kind) orders a release between two
    writes whatever each watch's delivery delay."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.writes: list[tuple[float, str, int, str, int]] = []
        self.releases: list[tuple[int, str]] = []
        self.lost: list[str] = []
        self._replicas: dict[str, int] = {}
        self._served_by: dict[str, str] = {}
        self._watches = [watch.Watch(), watch.Watch()]
        self._stopped = threading.Event()
        apps, objects = client.AppsV1Api(cluster.api), client.CustomObjectsApi(cluster.api)
        calls = (
            (self._watches[0], self._saw_target, apps.list_namespaced_deployment, (namespace,)),
            (
                self._watches[1],
                self._saw_policy,
                objects.list_namespaced_custom_object,
                (GROUP, VERSION, namespace, PLURAL),
            ),
        )
        for w, saw, call, args in calls:
            threading.Thread(target=self._run, args=(w, saw, call, args), daemon=True).start()

    def _run(self, w: watch.Watch, saw: Any, call: Any, args: tuple[str, ...]) -> None:
        # A watch the server ends (or that breaks) is opened again: a gap would hide a second writer.
        # Each new stream goes on from the last version seen: a fresh listing would skip the changes between.
        while not self._stopped.is_set():
            since = {"resource_version": w.resource_version} if w.resource_version else {}
            try:
                for event in w.stream(call, *args, timeout_seconds=60, **since):
                    saw(event["object"])
            except client.ApiException as exc:
                if (
                    exc.status == 410
                ):  # too old to go on from: writes may have been missed, which overlaps() says
                    self.lost.append(str(exc))
                    w.resource_version = None
            except ProtocolError:
                continue

    def _saw_target(self, obj: client.V1Deployment) -> None:
        name, replicas = obj.metadata.name, obj.spec.replicas
        if self._replicas.get(name, replicas) != replicas:
            revision = int(obj.metadata.resource_version)
            self.writes.append((time.monotonic(), name, replicas, replicas_owner(obj), revision))
        self._replicas[name] = replicas

    def _saw_policy(self, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        by = (obj.get("status") or {}).get("servedBy") or ""
        if self._served_by.get(name) and not by:
            self.releases.append((int(obj["metadata"]["resourceVersion"]), name))
        self._served_by[name] = by

    def stop(self) -> None:
        self._stopped.set()
        for w in self._watches:
            w.stop()

    def replicas_seen(self, targets: list[str]) -> set[int | None]:
        """The targets' replicas as this watch has seen them so far (it may lag a fresh list)."""
        return {self._replicas.get(t) for t in targets}

    def by(self, prefix: str = "scalekeeper-") -> list[tuple[float, str, int, str, int]]:
        return [w for w in self.writes if w[3].startswith(prefix)]

    def overlaps(self, within: float, policy_of: dict[str, str]) -> list[str]:
        """Each pair of successive writes of one target by two members less than `within` seconds apart
        with no release of its policy between them (`policy_of`: target -> the policy sizing it): a
        handover without the old server's acknowledgement must wait out its Lease."""
        found = [f"the watch lost events: {why}" for why in self.lost]
        for target in {w[1] for w in self.writes}:
            mine = [w for w in self.by() if w[1] == target]
            for (t1, _, r1, m1, v1), (t2, _, r2, m2, v2) in itertools.pairwise(mine):
                released = any(v1 < v < v2 and p == policy_of.get(target) for v, p in self.releases)
                if m1 != m2 and t2 - t1 < within and not released:
                    found.append(f"{target}: {m1} wrote {r1}, {t2 - t1:.1f} s later {m2} wrote {r2}")
        return found


def replicas_owner(obj: client.V1Deployment) -> str:
    """The field manager owning `spec.replicas` (the last to write it)."""
    for entry in obj.metadata.managed_fields or []:
        if "f:replicas" in ((entry.fields_v1 or {}).get("f:spec") or {}):
            return str(entry.manager)
    return ""
