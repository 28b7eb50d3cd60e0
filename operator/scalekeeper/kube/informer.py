"""List-then-watch caches (informers) that keep a small entry per object and drop the body at once.

The operator reads the replica counts of the workloads it sizes and the HPAs it owns from here rather than
from the API server on every cycle. kopf's indexes did the same, but kopf keeps every listed body alive
until all its indexes are filled (at 1,000 policies, 6,000 workloads: about 105 MiB of parsed JSON at
once, and freed heap the process never gave back) and a per-object memory afterwards. An informer here
parses one list page or one watch event at a time, keeps what `entry_of` extracts, and lets the rest go.

One thread per watched list (a kind, cluster-wide or in one namespace): it lists in pages, then watches
from the list's resourceVersion with bookmarks; when the watch expires (410 Gone) or fails it lists again
and replaces everything it holds, so an object deleted while nobody watched is dropped too.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from kubernetes.client.rest import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("scalekeeper.informer")

V = TypeVar("V")
# body -> the index entries of that object (several keys may point at one object)
EntryOf = Callable[[Mapping[str, Any]], Mapping[str, V]]
# body -> what its entries are made from, when comparing that is cheaper than making them again
SourceOf = Callable[[Mapping[str, Any]], Hashable]

# Objects a list page brings. Not client-go's 500: a page is decoded into dicts at once (500 pods, about
# 2.4 MB of JSON, take some 40 MB of them), and the entries kept meanwhile pin the allocator's arenas
# once the page is freed, so a replica's resident memory keeps the page's peak. bench.seen_memory at 3,000
# policies: 92 MB resident for 31 MB live at 500, 47 MB at 100; 50 saves 4 MB more for twice the requests.
PAGE_SIZE = 100


class BodyListener(Protocol):
    """Told every body an informer sees, on its thread: for a consumer that needs more than the entries
    (the scheduler keeps each policy's spec and status)."""

    def seen(self, body: Mapping[str, Any]) -> None:
        """Listed, added or modified."""

    def gone(self, body: Mapping[str, Any]) -> None:
        """Deleted."""

    def listed(self, uids: set[str], covers: Callable[[str], bool]) -> None:
        """A (re)list ended: of the objects in the namespaces `covers` accepts, only these uids exist."""


class EntryIndex(Generic[V]):
    """key -> the entries stored under it, by object. Written by informer threads, read by cycles.

    A key's holders are a tuple of (object, entry) pairs, not a dict: nearly every key has one holder,
    and a replica holds every watched object's keys (a dict of one is 184 bytes, the tuple 104)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, tuple[tuple[str, V], ...]] = {}
        # object ("namespace/name") -> the keys it is stored under, to drop them when it changes or goes
        self._keys_of: dict[str, tuple[str, ...]] = {}

    def put(self, obj: str, entries: Mapping[str, V]) -> None:
        with self._lock:
            self._drop(obj)
            self._add(obj, entries)

    def remove(self, obj: str) -> None:
        with self._lock:
            self._drop(obj)

    def reset(self, objects: Mapping[str, Mapping[str, V]], owned: Callable[[str], bool]) -> None:
        """After a (re)list: the listed objects replace every object `owned` says came from that list."""
        with self._lock:
            for obj in [o for o in self._keys_of if owned(o)]:
                self._drop(obj)
            for obj, entries in objects.items():
                self._drop(obj)
                self._add(obj, entries)

    def get(self, key: str) -> list[V]:
        with self._lock:
            return [entry for _, entry in self._by_key.get(key, ())]

    def __len__(self) -> int:
        with self._lock:
            return len(self._keys_of)

    def _add(self, obj: str, entries: Mapping[str, V]) -> None:
        """`obj` holds no key here (dropped first)."""
        for key, value in entries.items():
            self._by_key[key] = (*self._by_key.get(key, ()), (obj, value))
        self._keys_of[obj] = tuple(entries)

    def _drop(self, obj: str) -> None:
        for key in self._keys_of.pop(obj, ()):
            others = tuple(pair for pair in self._by_key.get(key, ()) if pair[0] != obj)
            if others:
                self._by_key[key] = others
            else:
                self._by_key.pop(key, None)


class WatchExpired(Exception):
    """The resourceVersion the watch resumes from is gone (410): list again."""


def object_id(body: Mapping[str, Any]) -> str:
    meta = body["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


class Informer(Generic[V]):
    """Keeps `index` in step with one list endpoint (`list_fn`, a kubernetes client list method, possibly
    bound to a namespace). `namespace_ok` says which namespaces' objects it keeps: a cluster-wide list's
    served ones (globs), a namespaced list's own. With `source_of`, a watch event whose source is the one
    already held keeps the entries as they are: a ScalingPolicy's status writes do not change what it
    claims."""

    def __init__(
        self,
        what: str,
        list_fn: Callable[..., Any],
        entry_of: EntryOf[V],
        index: EntryIndex[V],
        namespace_ok: Callable[[str], bool] = lambda _: True,
        page_size: int = PAGE_SIZE,
        server_timeout: int = 300,
        source_of: SourceOf | None = None,
    ) -> None:
        self.what = what
        self._list_fn = list_fn
        self._entry_of = entry_of
        self.index = index
        self._namespace_ok = namespace_ok
        self._page_size = page_size
        self._server_timeout = server_timeout
        self._source_of = source_of
        # Set before start(); told every body listed or watched.
        self.listener: BodyListener | None = None
        # object -> the source of the entries held for it (with `source_of`; else every object listed, None)
        self._sources: dict[str, Hashable] = {}
        self.ready = threading.Event()
        self.relists = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"watch {self.what}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        backoff = 1.0
        while not self._stop.is_set():
            try:
                version = self.relist()
                backoff = 1.0
                while not self._stop.is_set():
                    version = self.watch(version)
            except WatchExpired:
                log.info("watch %s expired; listing again", self.what)
            except Exception as exc:  # any failure: list again after a pause, never give up
                log.warning("watch %s failed: %s; listing again in %.0fs", self.what, exc, backoff)
                self._stop.wait(backoff)
                backoff = min(30.0, backoff * 2)

    def relist(self) -> str:
        """List every page; replace what this informer holds. Returns the list's resourceVersion."""
        objects: dict[str, Mapping[str, V]] = {}
        sources: dict[str, Hashable] = {}
        uids: set[str] = set()
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": self._page_size, "_request_timeout": 60}
            if token:
                kwargs["_continue"] = token
            try:
                resp = self._list_fn(_preload_content=False, **kwargs)
            except ApiException as exc:
                if exc.status == 410:  # the continue token expired between pages: start over
                    objects, sources, uids, token = {}, {}, set(), None
                    continue
                raise
            page = json.loads(resp.data)
            for item in page.get("items") or ():
                if self._namespace_ok(item["metadata"].get("namespace", "")):
                    obj = object_id(item)
                    objects[obj] = self._entry_of(item)
                    sources[obj] = self._source(item)
                    if self.listener is not None:
                        self.listener.seen(item)
                        uids.add(str(item["metadata"].get("uid", "")))
            meta = page.get("metadata") or {}
            token = meta.get("continue") or None
            if token is None:
                version = str(meta.get("resourceVersion", ""))
                break
        previous = self._sources
        self.index.reset(objects, lambda obj: obj in previous)
        self._sources = sources
        if self.listener is not None:
            self.listener.listed(uids, self._namespace_ok)
        self.relists += 1
        self.ready.set()
        return version

    def watch(self, version: str) -> str:
        """Apply watch events from `version` until the server ends the watch; returns where to resume."""
        resp = self._list_fn(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._server_timeout,
            _preload_content=False,
            _request_timeout=(10, self._server_timeout + 30),
        )
        try:
            for line in iter_resp_lines(resp):
                if self._stop.is_set():
                    break
                if not line or line.isspace():
                    continue
                event = json.loads(line)
                kind, body = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if body.get("code") == 410:
                        raise WatchExpired()
                    raise ApiException(status=body.get("code"), reason=body.get("message"))
                version = str(body.get("metadata", {}).get("resourceVersion") or version)
                if kind == "BOOKMARK":
                    continue
                if not self._namespace_ok(body["metadata"].get("namespace", "")):
                    continue
                obj = object_id(body)
                if kind == "DELETED":
                    self.index.remove(obj)
                    self._sources.pop(obj, None)
                    if self.listener is not None:
                        self.listener.gone(body)
                    continue
                if self.listener is not None:
                    self.listener.seen(body)
                source = self._source(body)
                if source is not None and self._sources.get(obj) == source:
                    continue
                self.index.put(obj, self._entry_of(body))
                self._sources[obj] = source
        finally:
            resp.close()
            resp.release_conn()
        return version

    def _source(self, body: Mapping[str, Any]) -> Hashable:
        return None if self._source_of is None else self._source_of(body)
