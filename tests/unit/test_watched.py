"""The watched-object indexes' entries, and reading a cycle's targets and HPAs from them."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from scalekeeper import model
from scalekeeper.engine.types import ObservedTarget
from scalekeeper.kube.hpa import HpaClient, HpaState, hpa_name
from scalekeeper.kube.owners import OwnerRef
from scalekeeper.kube.packed import unpack
from scalekeeper.kube.targets import ReplicaState, TargetRef
from scalekeeper.kube.versions import compare_versions, is_older
from scalekeeper.kube.watched import Watched, hpa_entry, replica_entry
from scalekeeper.memory import WATCH_LAG_LIMIT_SECONDS, OwnWrite, PolicyMemory
from scalekeeper.tiers import tiers_of
from scalekeeper.tiers.base import Observation
from tests.cycle_scenarios import watched_hpas

POLICY = OwnerRef("shop", "web", "uid-policy")
OTHER = OwnerRef("shop", "other", "uid-other")


def deployment(name: str, replicas: int, rv: str, ready: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "shop", "resourceVersion": rv},
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [{"name": "c"}]}}},
    }
    if ready is not None:
        # As the API server serves it: pods (started or not) in replicas, a zero readyReplicas omitted.
        body["status"] = {"observedGeneration": 1, "replicas": replicas}
        if ready:
            body["status"]["readyReplicas"] = ready
    return body


def hpa(name: str, deployment: str, owner: OwnerRef | None, rv: str = "7") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "shop", "resourceVersion": rv, "uid": "x"}
    if owner is not None:
        meta["ownerReferences"] = [owner.reference()]
    return {
        "metadata": meta,
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": deployment}, "minReplicas": 2},
        "status": {"currentReplicas": 2},
    }


def test_a_deployment_entry_is_its_scale() -> None:
    (state,) = replica_entry("Deployment", deployment("api", 3, "41", ready=2)).values()
    assert state == ReplicaState(3, "41", ready=2)


def test_a_deployment_entry_counts_ready_pods_not_started_ones() -> None:
    (none_ready,) = replica_entry("Deployment", deployment("api", 3, "41", ready=0)).values()
    assert none_ready.ready == 0  # readyReplicas omitted: zero, not status.replicas (3 pods)
    (unseen,) = replica_entry("Deployment", deployment("api", 3, "41")).values()
    assert unseen.ready is None  # no status yet: unknown


def test_only_deployments_and_statefulsets_without_a_replicas_path_are_read_from_the_index() -> None:
    states = {"Deployment/shop/api": ReplicaState(3, "41")}
    watched = Watched(states)
    assert (
        watched.replica_state(TargetRef("apps/v1", "Deployment", "api", "shop"))
        == states["Deployment/shop/api"]
    )
    assert watched.replica_state(TargetRef("apps/v1", "Deployment", "gone", "shop")) is None
    assert watched.replica_state(TargetRef("apps/v1", "Deployment", "api", "shop", "spec.replicas")) is None
    assert watched.replica_state(TargetRef("postgresql.cnpg.io/v1", "Cluster", "api", "shop")) is None
    spec = model.parse_spec(
        {
            "web": {"deployment": "api", "maxReplicas": 3, "cpuUtilization": 80},
            "workers": [{"queue": "q", "deployment": "w", "maxReplicas": 2, "tasksPerWorker": 1}],
            "readReplicas": {
                "target": {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "name": "pg"},
                "maxReplicas": 3,
                "metric": {"query": "load", "perReplica": 1.0},
            },
        }
    )
    keys = [key for tier in tiers_of(spec, POLICY) for key in tier.watched_keys()]
    # web: its Deployment and HPAs (ours by name, others by target); the worker and its pods (busy-worker
    # protection is on by default); a Cluster is not watched
    assert keys == [
        "Deployment/shop/api",
        "name/shop/web-web",
        "target/shop/api",
        "Deployment/shop/w",
        "pods/shop/w",
    ]


def test_the_hpa_entry_keeps_what_the_cycle_compares_and_no_status() -> None:
    entry = hpa_entry(hpa("web-web", "api", POLICY))
    assert set(entry) == {"name/shop/web-web", "target/shop/api"}
    assert entry["name/shop/web-web"] is entry["target/shop/api"]  # one packed copy under both keys
    trimmed = unpack(entry["name/shop/web-web"])
    assert "status" not in trimmed and trimmed["spec"]["minReplicas"] == 2
    assert trimmed["metadata"]["resourceVersion"] == "7"


# the same cases HpaClient.observe answers from a listing
@given(
    st.lists(
        st.tuples(
            st.sampled_from([hpa_name("web"), "hand-made", "other-web"]),
            st.sampled_from(["api", "worker"]),
            st.sampled_from([POLICY, OTHER, None]),
        ),
        max_size=4,
        unique_by=lambda t: t[0],
    )
)
def test_the_index_answer_matches_the_listing_answer(objects: list[tuple[str, str, OwnerRef | None]]) -> None:
    bodies = [hpa(name, target, owner) for name, target, owner in objects]
    owned, foreign = None, None
    for obj in bodies:  # HpaClient.observe's rule, applied to the full list
        refs = obj["metadata"].get("ownerReferences") or []
        if obj["metadata"]["name"] == hpa_name("web") and any(r["uid"] == POLICY.uid for r in refs):
            owned = obj["metadata"]["name"]
        elif obj["spec"]["scaleTargetRef"]["name"] == "api":
            foreign = obj["metadata"]["name"]
    state = HpaClient.state_from(watched_hpas(bodies), POLICY, "api")
    assert (state.owned["metadata"]["name"] if state.owned else None) == owned
    assert (state.foreign is None) == (foreign is None)


def seen_replicas(memory: PolicyMemory, name: str, watched: ReplicaState, now: float) -> ReplicaState:
    """What a tier's observe takes as the target's state (tiers/base.py)."""
    mine = memory.believed((name, "replicas"), watched.resource_version, now)
    return mine if isinstance(mine, ReplicaState) else watched


def seen_hpa(memory: PolicyMemory, watched: HpaState, now: float) -> HpaState:
    """What the web tier's observe takes as the owned HPA (tiers/web.py)."""
    version = watched.owned["metadata"]["resourceVersion"] if watched.owned else None
    mine = memory.believed(("web", "hpa"), version, now)
    return HpaState(mine, watched.foreign) if mine is not None else watched


def test_our_own_write_counts_until_the_watch_shows_a_newer_version() -> None:
    memory = PolicyMemory()
    memory.wrote(("worker-default", "replicas"), OwnWrite("41", ReplicaState(5, "44"), "44", 100.0))
    # the watch has not delivered our write yet: at the version we wrote at, or one between (a status
    # change our retried write went past)
    assert seen_replicas(memory, "worker-default", ReplicaState(3, "41"), 101.0) == ReplicaState(5, "44")
    assert seen_replicas(memory, "worker-default", ReplicaState(3, "43"), 102.0) == ReplicaState(5, "44")
    # it has (or someone wrote after us): the watch is current, and our note is dropped
    assert seen_replicas(memory, "worker-default", ReplicaState(5, "44"), 103.0) == ReplicaState(5, "44")
    assert memory.own_writes == {}
    assert seen_replicas(memory, "worker-default", ReplicaState(3, "41"), 104.0) == ReplicaState(3, "41")


def test_a_newer_version_from_another_writer_wins_over_our_note() -> None:
    memory = PolicyMemory()
    memory.wrote(("w", "replicas"), OwnWrite("41", ReplicaState(5, "44"), "44", 100.0))
    # "100" is newer than "44" as a number, not as a string
    assert seen_replicas(memory, "w", ReplicaState(7, "100"), 101.0) == ReplicaState(7, "100")
    assert memory.own_writes == {}


def test_versions_that_cannot_be_ordered_fall_back_to_equality() -> None:
    memory = PolicyMemory()
    memory.wrote(("w", "replicas"), OwnWrite("abc", ReplicaState(5, "abd"), "abd", 100.0))
    assert seen_replicas(memory, "w", ReplicaState(3, "abc"), 101.0) == ReplicaState(5, "abd")
    assert seen_replicas(memory, "w", ReplicaState(3, "abz"), 102.0) == ReplicaState(3, "abz")


def test_a_note_the_watch_never_confirms_expires() -> None:
    memory = PolicyMemory()
    memory.wrote(("w", "replicas"), OwnWrite("41", ReplicaState(5, "44"), "44", 100.0))
    late = 100.0 + WATCH_LAG_LIMIT_SECONDS
    assert seen_replicas(memory, "w", ReplicaState(3, "41"), late) == ReplicaState(3, "41")
    assert memory.own_writes == {}


def test_a_created_hpa_counts_until_the_watch_shows_it() -> None:
    memory = PolicyMemory()
    made = hpa("web-web", "api", POLICY, rv="50")
    memory.wrote(("web", "hpa"), OwnWrite(None, made, "50", 100.0))
    assert seen_hpa(memory, HpaState(None, None), 101.0).owned == made
    seen = unpack(hpa_entry(made)["name/shop/web-web"])
    assert seen_hpa(memory, HpaState(seen, None), 102.0).owned == seen
    assert memory.own_writes == {}


def test_an_updated_hpa_deleted_since_is_seen_deleted() -> None:
    memory = PolicyMemory()
    memory.wrote(("web", "hpa"), OwnWrite("49", hpa("web-web", "api", POLICY, rv="50"), "50", 100.0))
    older = unpack(hpa_entry(hpa("web-web", "api", POLICY, rv="48"))["name/shop/web-web"])
    kept = seen_hpa(memory, HpaState(older, None), 101.0).owned
    assert kept is not None and kept["metadata"]["resourceVersion"] == "50"
    # gone (someone deleted it): the next cycle creates it again
    assert seen_hpa(memory, HpaState(None, None), 102.0).owned is None


@given(st.integers(min_value=0, max_value=10**40), st.integers(min_value=0, max_value=10**40))
def test_versions_compare_as_the_integers_they_are(a: int, b: int) -> None:
    assert compare_versions(str(a), str(b)) == (a > b) - (a < b)
    assert is_older(str(a), str(b)) == (a < b)


@given(st.text(max_size=6), st.integers(min_value=0, max_value=10**6))
def test_malformed_versions_are_not_ordered(text: str, number: int) -> None:
    well_formed = text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))
    order = compare_versions(text, str(number))
    assert (order is None) == (not well_formed)


def test_the_cycle_hands_the_ready_pods_to_the_engine() -> None:
    assert Observation(ReplicaState(4, "41", ready=2)).engine_view() == ObservedTarget(4, ready=2)
    assert Observation(missing="not found").engine_view() is None
