"""The informers' index and list/watch bookkeeping, driven by scripted API answers (no cluster: the cluster
tests exercise the real watches through every cycle that reads a target)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scalekeeper.kube.informer import EntryIndex, Informer, WatchExpired
from scalekeeper.kube.watched import namespace_filter


def body(ns: str, name: str, rv: str, value: int) -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "resourceVersion": rv}, "spec": {"v": value}}


def entry_of(obj: Any) -> dict[str, int]:
    meta, value = obj["metadata"], obj["spec"]["v"]
    return {f"{meta['namespace']}/{meta['name']}": value, f"ns/{meta['namespace']}": value}


class Response:
    def __init__(self, payload: bytes | list[dict[str, Any]]) -> None:
        self.data = payload if isinstance(payload, bytes) else b""
        self._lines = payload if isinstance(payload, list) else []
        self.closed = False

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        for event in self._lines:
            yield (json.dumps(event) + "\n").encode()

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


class ScriptedList:
    """A list endpoint: pages for plain calls, event lists for watch calls, in the order given."""

    def __init__(self, pages: list[dict[str, Any]], watches: list[list[dict[str, Any]]]) -> None:
        self.pages, self.watches = list(pages), list(watches)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> Response:
        self.calls.append(kwargs)
        if kwargs.get("watch"):
            return Response(self.watches.pop(0))
        return Response(json.dumps(self.pages.pop(0)).encode())


def page(items: list[dict[str, Any]], rv: str, cont: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        meta["continue"] = cont
    return {"items": items, "metadata": meta}


def test_a_list_in_pages_fills_the_index_and_resumes_the_watch_from_its_version() -> None:
    index: EntryIndex[int] = EntryIndex()
    api = ScriptedList(
        [page([body("a", "x", "1", 1)], "10", cont="c1"), page([body("b", "y", "2", 2)], "10")],
        [
            [
                {"type": "MODIFIED", "object": body("a", "x", "11", 5)},
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}},
            ]
        ],
    )
    informer = Informer("things", api, entry_of, index, page_size=1)
    assert not informer.ready.is_set()
    version = informer.relist()
    assert (version, index.get("a/x"), index.get("b/y"), len(index)) == ("10", [1], [2], 2)
    assert informer.ready.is_set()
    assert api.calls[1]["_continue"] == "c1" and api.calls[0]["limit"] == 1
    assert informer.watch(version) == "15"
    assert api.calls[2]["resource_version"] == "10" and api.calls[2]["allow_watch_bookmarks"]
    assert index.get("a/x") == [5]
    assert sorted(index.get("ns/a") + index.get("ns/b")) == [2, 5]


def test_a_deleted_object_leaves_every_key_it_was_stored_under() -> None:
    index: EntryIndex[int] = EntryIndex()
    api = ScriptedList(
        [page([body("a", "x", "1", 1), body("a", "z", "1", 3)], "10")],
        [[{"type": "DELETED", "object": body("a", "x", "12", 1)}]],
    )
    informer = Informer("things", api, entry_of, index)
    informer.watch(informer.relist())
    assert index.get("a/x") == [] and index.get("ns/a") == [3] and len(index) == 1


def test_a_relist_drops_what_was_deleted_while_nobody_watched() -> None:
    index: EntryIndex[int] = EntryIndex()
    api = ScriptedList(
        [page([body("a", "x", "1", 1), body("a", "z", "1", 3)], "10"), page([body("a", "z", "20", 4)], "20")],
        [[{"type": "ADDED", "object": body("a", "w", "12", 7)}]],
    )
    informer = Informer("things", api, entry_of, index)
    informer.watch(informer.relist())
    assert index.get("a/w") == [7]
    informer.relist()
    assert (index.get("a/x"), index.get("a/w"), index.get("a/z")) == ([], [], [4])


def test_an_event_with_the_source_already_held_keeps_the_entries_without_making_them_again() -> None:
    # A policy's status write (same generation) changes nothing it claims; a spec change, or the object
    # deleted and made again, does.
    made: list[str] = []

    def counted(obj: Any) -> dict[str, int]:
        made.append(obj["metadata"]["resourceVersion"])
        return entry_of(obj)

    def generation(obj: Any, gen: int, value: int) -> dict[str, Any]:
        obj["metadata"]["generation"] = gen
        obj["spec"]["v"] = value
        return obj

    index: EntryIndex[int] = EntryIndex()
    api = ScriptedList(
        [page([generation(body("a", "x", "1", 1), 1, 1)], "10")],
        [
            [
                # the "status write": same generation; the value in it is never read
                {"type": "MODIFIED", "object": generation(body("a", "x", "11", 9), 1, 9)},
                {"type": "MODIFIED", "object": generation(body("a", "x", "12", 2), 2, 2)},
                {"type": "DELETED", "object": generation(body("a", "x", "13", 2), 2, 2)},
                {"type": "ADDED", "object": generation(body("a", "x", "14", 3), 2, 3)},
            ]
        ],
    )
    informer = Informer("things", api, counted, index, source_of=lambda o: o["metadata"]["generation"])
    informer.relist()
    assert made == ["1"]
    informer.watch("10")
    assert made == ["1", "12", "14"] and index.get("a/x") == [3]


def test_a_relist_keeps_what_other_informers_of_the_same_index_hold() -> None:
    index: EntryIndex[int] = EntryIndex()
    first = Informer("in a", ScriptedList([page([body("a", "x", "1", 1)], "1")], []), entry_of, index)
    second = Informer(
        "in b",
        ScriptedList([page([body("b", "y", "1", 2)], "1"), page([], "2")], []),
        entry_of,
        index,
    )
    first.relist()
    second.relist()
    second.relist()
    assert (index.get("a/x"), index.get("b/y")) == ([1], [])


def test_an_expired_watch_asks_for_a_relist_and_other_errors_raise() -> None:
    index: EntryIndex[int] = EntryIndex()
    gone = {"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}
    api = ScriptedList([page([], "1")], [[gone]])
    informer = Informer("things", api, entry_of, index)
    with pytest.raises(WatchExpired):
        informer.watch(informer.relist())
    forbidden = {"type": "ERROR", "object": {"code": 403, "message": "forbidden"}}
    with pytest.raises(Exception, match="forbidden"):
        Informer("things", ScriptedList([], [[forbidden]]), entry_of, index).watch("1")


def test_a_cluster_wide_informer_keeps_only_the_served_namespaces() -> None:
    index: EntryIndex[int] = EntryIndex()
    api = ScriptedList(
        [page([body("team-a", "x", "1", 1), body("other", "y", "1", 2)], "1")],
        [[{"type": "ADDED", "object": body("kube-system", "z", "2", 3)}]],
    )
    informer = Informer("things", api, entry_of, index, namespace_ok=namespace_filter(["team-*"]))
    informer.watch(informer.relist())
    assert (len(index), index.get("team-a/x")) == (1, [1])


def test_no_namespaces_means_every_namespace() -> None:
    assert namespace_filter([])("anything")
    assert not namespace_filter(["a", "b-*"])("c")
    assert namespace_filter(["a", "b-*"])("b-1")


ops = st.lists(
    st.tuples(st.sampled_from(["put", "remove"]), st.sampled_from("abcd"), st.lists(st.sampled_from("kmn"))),
    max_size=40,
)


@given(ops)
def test_the_index_answers_like_a_recomputation_from_the_objects_it_holds(script: Any) -> None:
    index: EntryIndex[str] = EntryIndex()
    objects: dict[str, list[str]] = {}
    for op, obj, keys in script:
        if op == "put":
            index.put(obj, {k: obj for k in keys})
            objects[obj] = keys
        else:
            index.remove(obj)
            objects.pop(obj, None)
    for key in "kmn":
        assert sorted(index.get(key)) == sorted(o for o, ks in objects.items() if key in ks)
    assert len(index) == len(objects)


def test_hpas_count_as_watched_only_once_every_hpa_informer_has_listed() -> None:
    from kubernetes import client

    from scalekeeper.kube.targets import ReplicaState
    from scalekeeper.kube.watched import WatchedObjects, replica_key

    watches = WatchedObjects(client.ApiClient(), ["shop", "tools"])  # nothing is started: no API call
    assert len(watches.informers) == 10 and not watches.ready()
    api, unseen = replica_key("Deployment", "shop", "api"), replica_key("Deployment", "shop", "x")
    watches.replicas.put("shop/api", {api: ReplicaState(3, "9")})
    seen = watches.snapshot([api, unseen])
    # what was seen is served, what was not is left to the cycle to read; HPAs are not trusted yet
    assert seen.replicas == {api: ReplicaState(3, "9")}
    assert not seen.hpas_watched
    for informer in watches.informers:
        if informer.index is watches.hpas:
            informer.ready.set()
    assert watches.snapshot([]).hpas_watched and not watches.ready()
    # Pods likewise: a worker's pods count as seen only once every pod informer has listed.
    assert watches.snapshot([]).pods_of("pods/shop/w") is None
    for informer in watches.informers:
        if informer.index is watches.pods:
            informer.ready.set()
    assert watches.snapshot([]).pods_of("pods/shop/w") == []


def test_a_snapshot_unpacks_each_hpa_once_for_both_its_keys_into_a_copy_of_its_own() -> None:
    from kubernetes import client

    from scalekeeper.kube.watched import WatchedObjects, hpa_entry

    watches = WatchedObjects(client.ApiClient(), ["shop"])  # nothing is started: no API call
    body = {
        "metadata": {"name": "web-web", "namespace": "shop", "resourceVersion": "7"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}, "minReplicas": 2},
    }
    watches.hpas.put("shop/web-web", hpa_entry(body))
    first = watches.snapshot(["name/shop/web-web", "target/shop/api"]).hpas
    [by_name], [by_target] = first["name/shop/web-web"], first["target/shop/api"]
    assert by_name is by_target and by_name["spec"]["minReplicas"] == 2
    by_name["spec"]["minReplicas"] = 9  # a cycle's change stays in its own copy
    [again] = watches.snapshot(["name/shop/web-web"]).hpas["name/shop/web-web"]
    assert again["spec"]["minReplicas"] == 2


def test_the_claims_tell_every_policy_naming_a_workload_once_every_policy_informer_has_listed() -> None:
    from kubernetes import client

    from scalekeeper.engine.claims import PolicyId
    from scalekeeper.kube.watched import WatchedObjects

    older, newer = (
        PolicyId("2026-01-01T00:00:00Z", "shop", "a"),
        PolicyId("2026-02-01T00:00:00Z", "shop", "b"),
    )
    watches = WatchedObjects(client.ApiClient(), ["shop"])  # nothing is started: no API call
    assert not watches.wait_claims_listed(0.01)
    watches.claims.put("shop/a", {"Deployment/shop/web": older, "Deployment/shop/db": older})
    watches.claims.put("shop/b", {"Deployment/shop/web": newer})
    for informer in watches.informers:
        if informer.index is watches.claims:
            informer.ready.set()
    assert watches.wait_claims_listed(0.01) and not watches.ready()
    claimants = watches.claimants(["Deployment/shop/web", "Deployment/shop/db", "Deployment/shop/x"])
    assert sorted(claimants["Deployment/shop/web"]) == [older, newer]
    assert claimants["Deployment/shop/db"] == [older] and claimants["Deployment/shop/x"] == []


class Listener:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def seen(self, obj: Any) -> None:
        self.calls.append(("seen", obj["metadata"]["resourceVersion"]))

    def gone(self, obj: Any) -> None:
        self.calls.append(("gone", obj["metadata"]["resourceVersion"]))

    def listed(self, uids: set[str], covers: Any) -> None:
        self.calls.append(("listed", (sorted(uids), covers("a"), covers("b"))))


def test_a_listener_is_told_every_body_listed_or_watched_even_when_its_entries_are_kept() -> None:
    def with_uid(obj: dict[str, Any], uid: str) -> dict[str, Any]:
        obj["metadata"]["uid"] = uid
        return obj

    index: EntryIndex[int] = EntryIndex()
    api = ScriptedList(
        [
            page([with_uid(body("a", "x", "1", 1), "u1"), with_uid(body("b", "y", "2", 2), "u2")], "10"),
            page([with_uid(body("a", "x", "30", 1), "u1")], "30"),
        ],
        [
            [
                {"type": "MODIFIED", "object": with_uid(body("a", "x", "11", 1), "u1")},  # same source
                {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}},
                {"type": "DELETED", "object": with_uid(body("a", "x", "13", 1), "u1")},
            ]
        ],
    )
    informer = Informer("things", api, entry_of, index, namespace_ok="a".__eq__, source_of=lambda o: 0)
    listener = Listener()
    informer.listener = listener
    informer.watch(informer.relist())
    informer.relist()
    assert listener.calls == [
        ("seen", "1"),  # "b/y" is outside the namespaces this informer keeps
        ("listed", (["u1"], True, False)),
        ("seen", "11"),
        ("gone", "13"),
        ("seen", "30"),
        ("listed", (["u1"], True, False)),
    ]
