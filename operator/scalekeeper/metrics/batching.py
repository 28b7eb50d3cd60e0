"""How the reads of the cycles that ask together are packed into Prometheus requests, and split again when
a request fails. Pure: no I/O, no clock (times are arguments); metrics/prometheus.py sends what it plans.

A request is one PromQL expression (promql.batch), sent as a form body; its parts are tagged by their index
in the request, so one answer is taken apart again and each read gets only its own readings. Limits: at
most `max_queries` queries and `max_bytes` of form body a request. One read's queries stay together in one
request when they fit in one; a read too large for one request gets requests of its own. Hence a read that
shares a request with others is in no other request, and a failure or a slow answer there touches only
the reads in it. A single query longer than `max_bytes` cannot be cut: it goes alone, over the limit.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote_plus

from .promql import batch, batch_parts, grouped, joined

# The form body around the expression: `query=` and `&time=<Unix seconds, 3 decimals>`, with room for
# any time before the year 2286.
_BODY_OVERHEAD = len("query=") + len("&time=") + len("9999999999.999")
_SEPARATOR = len(quote_plus(" or "))
_PARENTHESES = len(quote_plus("()"))


@dataclass(frozen=True)
class Limits:
    max_queries: int
    max_bytes: int


# bench.scale's policy (web, read replicas, three queues, with their CPU and memory) reads 18 queries, each
# 0.4-0.8 kB of form body with its tags: 100 queries is 5 such policies a request (64 KiB caps the
# heaviest queries at ~80). Prometheus
# itself reads form bodies up to 10 MB (Go's ParseForm); a smaller request keeps one expression's
# evaluation, and what one rejected or slow query costs the others, small.
DEFAULT_LIMITS = Limits(max_queries=100, max_bytes=64 * 1024)
# How long a read that broke a shared request is sent alone, at most (it goes back once it succeeds).
ISOLATION_SECONDS = 300.0


@dataclass(frozen=True)
class Part:
    """One query of one read: `read` is the read's index among those gathered, `key` its own key."""

    read: int
    key: Hashable
    query: str


Request = tuple[Part, ...]


def expression(request: Request) -> str:
    return batch({index: part.query for index, part in enumerate(request)})


def _measure(index: int, query: str) -> tuple[int, int]:
    """One query at `index` of a request: the form-encoded size of its parts joined (without the separator
    before them), and how many parts of the request's `or` it is."""
    parts = batch_parts(index, query)
    return len(quote_plus(joined(parts))), len(parts)


def body_bytes(request: Request) -> int:
    """An upper bound on the request's form body: exact but for the digits of its time."""
    filling = _Filling()
    filling.add(request)
    return filling.size


def _grouping(leaves: int) -> int:
    """The bytes of the parentheses that balance an `or` of `leaves` parts (promql.joined)."""
    return _PARENTHESES * grouped(leaves)


@dataclass
class _Filling:
    """The request being filled, its size so far and how many parts its `or` joins."""

    parts: list[Part] = field(default_factory=list)
    size: int = _BODY_OVERHEAD
    leaves: int = 0

    def take(self, queries: Sequence[Part], limits: Limits) -> bool:
        """Adds the queries if the request stays within the limits with them; whether it did."""
        if len(self.parts) + len(queries) > limits.max_queries:
            return False
        cost, leaves = self._cost(queries)
        if self.size + cost > limits.max_bytes:
            return False
        self._grow(queries, cost, leaves)
        return True

    def add(self, queries: Sequence[Part]) -> None:
        """Adds the queries whatever the limits (a query larger than a request goes alone)."""
        self._grow(queries, *self._cost(queries))

    def _cost(self, queries: Sequence[Part]) -> tuple[int, int]:
        start = len(self.parts)
        sizes = [_measure(start + i, p.query) for i, p in enumerate(queries)]
        leaves = sum(n for _, n in sizes)
        grouping = _grouping(self.leaves + leaves) - _grouping(self.leaves)
        separators = _SEPARATOR * (len(queries) - (0 if self.parts else 1))
        return sum(b for b, _ in sizes) + separators + grouping, leaves

    def _grow(self, queries: Sequence[Part], cost: int, leaves: int) -> None:
        self.size += cost
        self.leaves += leaves
        self.parts.extend(queries)


def parts_of(reads: Sequence[Mapping[Hashable, str]]) -> list[list[Part]]:
    return [[Part(r, key, query) for key, query in read.items()] for r, read in enumerate(reads)]


def pack(reads: Sequence[Mapping[Hashable, str]], limits: Limits, alone: frozenset[int]) -> list[Request]:
    """The requests that answer every query of `reads` once, in their order. The reads in `alone` (whose
    last request failed or was slow) get requests of their own."""
    requests: list[Request] = []
    shared = _Filling()
    for r, parts in enumerate(parts_of(reads)):
        if not parts:
            continue
        if r not in alone:
            if shared.take(parts, limits):
                continue
            fresh = _Filling()
            if shared.parts and fresh.take(parts, limits):
                requests.append(tuple(shared.parts))
                shared = fresh
                continue
        requests.extend(_own_requests(parts, limits))
    if shared.parts:
        requests.append(tuple(shared.parts))
    return [request for request in requests if request]


def _own_requests(parts: Sequence[Part], limits: Limits) -> list[Request]:
    """One read's queries in as few requests as the limits allow, in order, with no other read's."""
    out: list[Request] = []
    filling = _Filling()
    for part in parts:
        if filling.take([part], limits):
            continue
        if filling.parts:
            out.append(tuple(filling.parts))
            filling = _Filling()
            if filling.take([part], limits):
                continue
        filling.add([part])
    out.append(tuple(filling.parts))
    return out


def reads_in(request: Request) -> list[int]:
    """The reads with queries in the request, in order of their first query."""
    return list(dict.fromkeys(part.read for part in request))


def sender(request: Request) -> int:
    """The read whose caller sends the request: one that waits for its answer anyway."""
    return request[0].read


def split(request: Request) -> list[Request]:
    """What to ask instead of a request Prometheus rejected (one bad query fails a whole expression): each
    read's queries alone, so the others still get values; a read's queries each alone, so the failure is
    pinned on its query. Nothing for a single query: its failure is its own."""
    reads = reads_in(request)
    if len(reads) > 1:
        return [tuple(p for p in request if p.read == r) for r in reads]
    if len(request) > 1:
        return [(part,) for part in request]
    return []


@dataclass
class Isolation:
    """Reads sent alone for a while: those whose queries broke a shared request (Prometheus rejected them,
    or the request timed out and any of its reads may be the slow one). A read is known by its queries. It
    goes back to sharing as soon as its own request succeeds, or after `seconds`."""

    seconds: float
    until: dict[frozenset[tuple[str, str]], float] = field(default_factory=dict)

    @staticmethod
    def identity(read: Mapping[Hashable, str]) -> frozenset[tuple[str, str]]:
        return frozenset((str(k), q) for k, q in read.items())

    def isolated(self, reads: Sequence[Mapping[Hashable, str]], now: float) -> frozenset[int]:
        for identity in [i for i, until in self.until.items() if until <= now]:
            del self.until[identity]
        return frozenset(r for r, read in enumerate(reads) if self.identity(read) in self.until)

    def isolate(self, read: Mapping[Hashable, str], now: float) -> None:
        self.until[self.identity(read)] = now + self.seconds

    def release(self, read: Mapping[Hashable, str]) -> None:
        self.until.pop(self.identity(read), None)
