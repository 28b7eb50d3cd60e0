"""One table of cycle scenarios, run by the unit tests against a fake API server (tests/unit/test_cycle.py)
and by the cluster tests against the real one (tests/cluster/test_cycle_scenarios.py).

A scenario drives a `World`: a sized workload, ScalingPolicies, the metric they read and the policy cycles
(`Reconciler.run`), and asserts what a user would see: replicas, status, conditions and Events. The world
decides where the objects live; the scenarios do not know.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from scalekeeper.cycle import CycleResult
from scalekeeper.engine.claims import PolicyId
from scalekeeper.kube.packed import unpack
from scalekeeper.kube.watched import hpa_entry
from scalekeeper.metrics.prometheus import BatchResult, MetricsUnreadable, Missing, QueryResult, Sample
from scalekeeper.metrics.saturation import RESOURCE_METRICS
from scalekeeper.policy import claims_of

TARGET = "db"


def watched_hpas(bodies: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """What the operator's HPA index hands a cycle of these HPAs (WatchedObjects.snapshot): each one's
    entries, grouped by key, unpacked."""
    out: dict[str, list[dict[str, Any]]] = {}
    for body in bodies:
        for key, packed in hpa_entry(body).items():
            out.setdefault(key, []).append(unpack(packed))
    return out


class World(Protocol):
    events: list[tuple[str, str, str]]

    def target(self, replicas: int) -> None:
        """Create the sized workload: a Deployment named TARGET."""

    def policy(self, name: str, spec: dict[str, Any]) -> None:
        """Create a ScalingPolicy in the API server."""

    def load(self, value: float | None) -> None:
        """The value every query answers from now on; None: no series."""

    def snapshot(self) -> None:
        """What the watches show now is what the next cycles see (until `snapshot` again)."""

    def cycle(self, name: str, claimed_by: tuple[str, ...] = ()) -> CycleResult:
        """One cycle of the policy, with these policies claiming the same workloads."""

    def replicas(self) -> int: ...

    def touch(self) -> None:
        """A change of the workload that leaves its replicas alone (a controller's status write)."""

    def resize(self, replicas: int) -> None:
        """Another writer sets the replicas."""

    def delete_policy(self, name: str) -> None: ...

    def status(self, name: str) -> dict[str, Any]: ...

    def hpa(self, name: str) -> dict[str, Any] | None: ...


@dataclass
class StandInMetrics:
    """Every query answers `value`, sampled at `clock()`; None: no series. The scenarios are about the cycle
    and the API server; the path through the real Prometheus is the operator's end-to-end tests'."""

    clock: Callable[[], float]
    value: float | None = None
    per_label: dict[str, float] | None = field(default_factory=dict)
    # What the CPU and memory queries answer (share of the limits); None: no series, as from a Prometheus
    # without the kubelet's cAdvisor.
    resources: float | None = None

    def read(self, queries: Mapping[Any, str]) -> BatchResult[Any]:
        readings: dict[Any, QueryResult] = {}
        for key, q in queries.items():
            value = self.resources if key.metric in RESOURCE_METRICS else self.value
            readings[key] = (
                Missing(q, "the query returned no series") if value is None else Sample(value, self.clock())
            )
        return BatchResult(readings, 1, 0.0)

    def by_label(self, query: str, label: str) -> dict[str, float]:
        """`per_label`'s values (a worker's tasks executing per pod); None: Prometheus cannot answer."""
        if self.per_label is None:
            raise MetricsUnreadable("Prometheus at stand-in is unreachable")
        return dict(self.per_label)


def claimants(bodies: Mapping[str, dict[str, Any]], names: tuple[str, ...]) -> dict[str, list[PolicyId]]:
    """What the operator's index of claims holds for these policies: target key -> every policy naming it."""
    out: dict[str, list[PolicyId]] = {}
    for name in names:
        for key, holder in claims_of(bodies[name]).items():
            out.setdefault(key, []).append(holder)
    return out


def replicas_spec(**overrides: Any) -> dict[str, Any]:
    """Read replicas on the Deployment TARGET: 10 per replica, 1 to 5, the HPA's default behaviour."""
    spec: dict[str, Any] = {
        "readReplicas": {
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "name": TARGET},
            "minReplicas": 1,
            "maxReplicas": 5,
            "metric": {"query": "scenario_load", "perReplica": 10.0},
        }
    }
    spec.update(overrides)
    return spec


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == type_)


def reasons(world: World) -> list[str]:
    return [reason for _, reason, _ in world.events]


def one_tier_scaled(w: World) -> None:
    w.target(1)
    w.policy("p", replicas_spec())
    w.load(35)
    result = w.cycle("p")
    assert w.replicas() == 4 and result.writes == 1
    assert [m for t, r, m in w.events if r == "Scaled"] == [
        "Scaled readReplicas 1 -> 4: load 35 at 10 per replica needs 4; scaling 1 -> 4"
    ]
    status = w.status("p")
    assert status["readReplicas"] == "1/4"  # as found this cycle / as decided
    assert status["targets"][0]["desiredReplicas"] == 4
    assert condition(status, "Ready")["status"] == "True"


def status_only_conflict_is_retried(w: World) -> None:
    w.target(2)
    w.policy("p", replicas_spec())
    w.load(35)
    w.snapshot()
    w.touch()  # the watch is one status write behind: the write's version is stale, the count is not
    w.cycle("p")
    assert w.replicas() == 4
    assert reasons(w).count("Scaled") == 1


def resize_by_another_writer_is_not_overwritten(w: World) -> None:
    w.target(2)
    w.policy("p", replicas_spec())
    w.load(35)
    w.snapshot()
    w.resize(3)  # decided on 2; someone else made it 3 meanwhile
    result = w.cycle("p")
    assert w.replicas() == 3
    assert "Scaled" not in reasons(w)
    assert any("resized to 3 by another writer" in e for e in result.errors)
    ready = condition(w.status("p"), "Ready")
    assert ready["status"] == "False" and "another writer" in ready["message"]
    # decided again on fresh data: the failed write did not count against the rate limits
    w.snapshot()
    w.cycle("p")
    assert w.replicas() == 4 and reasons(w).count("Scaled") == 1


def missing_metrics_hold(w: World) -> None:
    w.target(3)
    w.policy("p", replicas_spec())
    w.load(None)
    for _ in range(3):
        w.cycle("p")
    assert w.replicas() == 3
    status = w.status("p")
    assert condition(status, "MetricsAvailable")["status"] == "False"
    assert status["targets"][0]["limitedBy"] == "missingMetric"
    assert reasons(w).count("Holding") == 1 and reasons(w).count("MetricsUnavailable") == 1


def dry_run_writes_nothing(w: World) -> None:
    w.target(1)
    w.policy("p", replicas_spec(mode="DryRun"))
    w.load(35)
    result = w.cycle("p")
    assert w.replicas() == 1 and result.writes == 0
    assert reasons(w) == ["WouldScale"]
    assert w.status("p")["targets"][0]["desiredReplicas"] == 4


def policy_deleted_during_its_cycle(w: World) -> None:
    w.target(1)
    w.policy("p", replicas_spec())
    w.load(5)
    w.delete_policy("p")  # the cycle runs on the body it was handed before the delete
    result = w.cycle("p")
    assert not result.status_written and not result.errors


def tier_conflict_older_policy_sizes(w: World) -> None:
    w.target(1)
    w.policy("older", replicas_spec())
    w.policy("newer", replicas_spec())
    w.load(35)
    w.cycle("newer", claimed_by=("older",))
    assert w.replicas() == 1
    status = w.status("newer")
    assert condition(status, "Conflict")["reason"] == "TargetSizedByOlderPolicy"
    assert status["targets"][0]["limitedBy"] == "conflict"
    w.cycle("older", claimed_by=("newer",))
    assert w.replicas() == 4


def web_floor_through_the_owned_hpa(w: World) -> None:
    w.target(1)
    spec = {
        "web": {
            "deployment": TARGET,
            "maxReplicas": 8,
            "cpuUtilization": 80,
            "requestRate": {"query": "scenario_rate", "perReplica": 10.0},
        }
    }
    w.policy("p", spec)
    w.load(35)
    w.cycle("p")
    made = w.hpa("p-web")
    assert made is not None and made["spec"]["minReplicas"] == 4 and made["spec"]["maxReplicas"] == 8
    assert made["metadata"]["ownerReferences"][0]["name"] == "p"
    # The Deployment is raised to the floor in the same cycle, not at the HPA controller's next sync.
    assert w.replicas() == 4
    w.load(55)
    w.snapshot()
    w.cycle("p")
    moved = w.hpa("p-web")
    # 6 wanted; the default scale-up policies allow max(2 x 1, 1 + 4) = 5 within 15 s of the first step
    assert moved is not None and moved["spec"]["minReplicas"] == 5
    assert w.replicas() == 5
    assert w.status("p")["targets"][0]["limitedBy"] == "scaleUpPolicy"
    assert reasons(w).count("Scaled") == 2


SCENARIOS: dict[str, Callable[[World], None]] = {
    f.__name__: f
    for f in (
        one_tier_scaled,
        status_only_conflict_is_retried,
        resize_by_another_writer_is_not_overwritten,
        missing_metrics_hold,
        dry_run_writes_nothing,
        policy_deleted_during_its_cycle,
        tier_conflict_older_policy_sizes,
        web_floor_through_the_owned_hpa,
    )
}
