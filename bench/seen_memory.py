"""What a policy costs a replica that only sees it (no cluster): the issue's aim is 10 KB at most.

Every replica lists and watches every policy, Deployment, HPA and pod in its namespaces, whatever share
it serves. This runs the operator's own informers (kube/informer.py, with kube/watched.py's entries) and
scheduler (scheduler.py, the policy informer's listener) in one process over N bench policies' objects:
list pages, then rounds of status writes of every policy as watch events, all made from bodies taken from
a `bench.scale` fleet on the kind cluster (bench/seen_memory_bodies.json: one policy with its status, one
of its Deployments, its HPA and its web pod, as the API server sends them, managedFields included),
renamed per object. Each size runs in a process of its own; it prints what a policy adds to the resident
memory, how much of that is live (pymalloc's blocks) and how much is free space the allocator holds (its
arenas beyond the blocks), and writes out/bench-seen-memory.png.

    python -m bench.seen_memory [--sizes 1000,3000,10000] [--rounds 3]

Bodies: `kubectl get -n NS scalingpolicy,deployment,hpa,pod -o json --show-managed-fields` of a
bench.scale fleet, one of each (see `load_bodies`).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.proc import proc_status, status_mib
from scalekeeper.cli import Parser
from scalekeeper.kube.informer import PAGE_SIZE

BODIES = Path(__file__).with_name("seen_memory_bodies.json")
PNG = ROOT / "out" / "bench-seen-memory.png"
KINDS = ("policy", "deployment", "hpa", "pod")
# A bench policy's targets: kube/watched.py indexes each of its Deployments.
TARGETS = ("web", "read", "worker-0", "worker-1", "worker-2")
NAMESPACES = tuple(f"bench-seen-{k}" for k in range(5))
EVENTS_PER_READ = 200  # watch events a stream read brings at once


def load_bodies() -> dict[str, str]:
    """Each kind's body as JSON text with its identity as placeholders: @NAME@, @NS@, @UID@, @RV@, and
    @POLICY@ wherever the policy's name appears (its targets' and pods' names)."""
    raw = json.loads(BODIES.read_text())
    policy = raw["policy"]["metadata"]["name"]
    out = {}
    for kind in KINDS:
        body = raw[kind]
        meta = body["metadata"]
        meta.update(name="@NAME@", namespace="@NS@", uid="@UID@", resourceVersion="@RV@")
        out[kind] = json.dumps(body, separators=(",", ":")).replace(policy, "@POLICY@")
    return out


def fill(template: str, index: int, name: str, version: int) -> str:
    namespace, policy = NAMESPACES[index % len(NAMESPACES)], f"sp-{index:05d}"
    uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{namespace}/{name}"))
    for key, value in (("@NAME@", name), ("@NS@", namespace), ("@UID@", uid), ("@RV@", str(version))):
        template = template.replace(key, value)
    return template.replace("@POLICY@", policy)


def bodies_of(templates: dict[str, str], kind: str, size: int, version: int = 1) -> Iterator[str]:
    for i in range(size):
        policy = f"sp-{i:05d}"
        names = {
            "policy": [policy],
            "deployment": [f"{policy}-{t}" for t in TARGETS],
            "hpa": [f"{policy}-web"],
            "pod": [f"{policy}-web-5d9c7b8f6-x2x4z"],
        }[kind]
        for name in names:
            yield fill(templates[kind], i, name, version * 10_000_000 + i)


def list_pages(bodies: Iterator[str]) -> list[bytes]:
    items = list(bodies)
    chunks = [items[k : k + PAGE_SIZE] for k in range(0, len(items), PAGE_SIZE)] or [[]]
    pages = []
    for k, chunk in enumerate(chunks):
        more = f',"continue":"{k + 1}"' if k + 1 < len(chunks) else ""
        pages.append(f'{{"items":[{",".join(chunk)}],"metadata":{{"resourceVersion":"1"{more}}}}}'.encode())
    return pages


def status_writes(templates: dict[str, str], size: int, rounds: int) -> list[bytes]:
    """Every policy's status written `rounds` times, as the watch brings it: streams of events."""
    reads = []
    for r in range(rounds):
        events = [
            '{"type":"MODIFIED","object":'
            + re.sub(r'"status":\{', f'"status":{{"round":{r},', body, count=1)
            + "}"
            for body in bodies_of(templates, "policy", size, version=r + 2)
        ]
        reads += [
            ("\n".join(events[k : k + EVENTS_PER_READ]) + "\n").encode()
            for k in range(0, len(events), EVENTS_PER_READ)
        ]
    return reads


class _Response:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, amt: int | None = None, decode_content: bool = False) -> Iterator[bytes]:
        for k in range(0, len(self.data), 65536):
            yield self.data[k : k + 65536]

    def close(self) -> None:
        pass

    def release_conn(self) -> None:
        pass


class _Done(Exception):
    """No more watch events: ends the informer's thread."""


def list_fn(pages: list[bytes], reads: list[bytes]) -> Callable[..., _Response]:
    """A kubernetes client list method's stand-in: the pages (by continue token), then the watch's reads.
    Both stay held to the end, so that the memory measured after is the informers' alone."""
    served = iter(reads)

    def call(watch: bool = False, **kwargs: Any) -> _Response:
        if watch:
            read = next(served, None)
            if read is None:
                raise _Done()
            return _Response(read)
        return _Response(pages[int(kwargs.get("_continue") or 0)])

    return call


def resident_mb() -> float:
    return status_mib(proc_status(os.getpid()), "VmRSS")


def pymalloc_mb() -> tuple[float, float]:
    """(pymalloc's arenas, the blocks allocated in them), MiB, from sys._debugmallocstats (to stderr).
    An arena is 1 MiB (CPython 3.10 and later)."""
    read, write = os.pipe()
    saved = os.dup(2)
    os.dup2(write, 2)
    try:
        sys._debugmallocstats()
    finally:
        os.dup2(saved, 2)
        os.close(write)
        os.close(saved)
    with os.fdopen(read) as f:
        text = f.read()
    return _stat(text, "arenas allocated current") * 1.0, _stat(text, "bytes in allocated blocks") / 2**20


def _stat(text: str, name: str) -> int:
    found = re.search(rf"# {name}\s*=\s*([\d,]+)", text)
    if found is None:
        raise RuntimeError(f"sys._debugmallocstats printed no {name!r}: not CPython's pymalloc?")
    return int(found.group(1).replace(",", ""))


def measure_one(size: int, rounds: int) -> dict[str, float]:
    """In this process: the informers list `size` policies' objects, then the policy watch brings
    `rounds` status writes of each; the memory before and after."""
    from scalekeeper.kube.informer import EntryIndex, Informer
    from scalekeeper.kube.pods import pod_entry
    from scalekeeper.kube.watched import hpa_entry, replica_entry, spec_source
    from scalekeeper.opmetrics import OperatorMetrics
    from scalekeeper.policy import claims_of
    from scalekeeper.scheduler import PolicyScheduler

    class Runtime:
        metrics = OperatorMetrics()

        def first_cycle_delay(self, uid: str, interval: float) -> float:
            return 0.0

    templates = load_bodies()
    pages = {kind: list_pages(bodies_of(templates, kind, size)) for kind in KINDS}
    reads = status_writes(templates, size, rounds)
    gc.collect()
    trim = ctypes.CDLL("libc.so.6").malloc_trim
    trim(0)
    rss_before, (arenas_before, blocks_before) = resident_mb(), pymalloc_mb()

    async def watch() -> Any:
        scheduler = PolicyScheduler(Runtime())  # type: ignore[arg-type]
        entry_of: dict[str, Callable[[Any], Any]] = {
            "policy": claims_of,
            "deployment": lambda body: replica_entry("Deployment", body),
            "hpa": hpa_entry,
            "pod": pod_entry,
        }
        informers = [
            Informer(
                kind,
                list_fn(pages[kind], reads if kind == "policy" else []),
                entry_of[kind],
                EntryIndex(),
                source_of=spec_source if kind == "policy" else None,
            )
            for kind in KINDS
        ]
        informers[0].listener = scheduler

        def run(informer: Informer[Any]) -> None:
            version = informer.relist()
            try:
                while True:
                    version = informer.watch(version)
            except _Done:
                pass

        threads = [threading.Thread(target=run, args=(i,)) for i in informers]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            await asyncio.sleep(0.01)  # the loop takes what the policy informer hands it meanwhile
        await asyncio.sleep(0)
        assert len(scheduler._policies) == size
        return scheduler, informers

    kept = asyncio.run(watch())
    gc.collect()
    trim(0)
    rss_after, (arenas_after, blocks_after) = resident_mb(), pymalloc_mb()
    del kept
    return {
        "policies": size,
        "rounds": rounds,
        "resident_mb": rss_after - rss_before,
        "live_mb": blocks_after - blocks_before,
        "arenas_mb": arenas_after - arenas_before,
    }


COLUMNS = (
    ("resident_mb", "resident"),
    ("live_mb", "live (pymalloc blocks)"),
    ("arenas_mb", "pymalloc arenas"),
)


def per_policy_kb(rows: list[dict[str, float]], key: str, i: int) -> float:
    """KB a policy, between this size and the one before: the fixed costs (the loop, the threads, a page
    being decoded) cancel out."""
    low = rows[i - 1] if i else {"policies": 0.0, key: 0.0}
    return (rows[i][key] - low[key]) * 1024 / (rows[i]["policies"] - low["policies"])


def plot(rows: list[dict[str, float]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    sizes = [r["policies"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, label in COLUMNS:
        ax.plot(sizes, [r[key] for r in rows], "o-", label=label)
    ax.plot(sizes, [n * 10 / 1024 for n in sizes], "k--", label="aim: 10 KB a policy")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("policies seen (not served)")
    ax.set_ylabel("MB added by the watch")
    ax.set_title("scalekeeper: the memory of policies only seen (bench.seen_memory)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    PNG.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(PNG, dpi=100)
    print(f"plot: {PNG.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m bench.seen_memory", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default="1000,3000,10000", help="policy counts, comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="status writes of every policy, watched")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one size, in this process
    args = parser.parse_args(argv)
    if args.rounds < 0:
        parser.error("--rounds must be 0 or more")
    if args.one is not None:
        print(json.dumps(measure_one(args.one, args.rounds)))
        return 0
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error("--sizes takes whole numbers, comma-separated")
    if not sizes or sizes[0] < 1:
        parser.error("--sizes must be positive")
    rows = []
    for size in sizes:
        # A process of its own: resident memory is never given back in full, so sizes must not share one.
        out = subprocess.run(
            [sys.executable, "-m", "bench.seen_memory", "--one", str(size), "--rounds", str(args.rounds)],
            capture_output=True,
            text=True,
            check=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"{args.rounds} rounds of status writes of every policy, watched after the lists")
    print(
        "| policies seen | MB added: "
        + " / ".join(label for _, label in COLUMNS)
        + " | KB a policy, from the size before (aim: resident 10) |"
    )
    print("| ---: | ---: | ---: |")
    for i, row in enumerate(rows):
        added = " / ".join(f"{row[key]:.1f}" for key, _ in COLUMNS)
        slope = " / ".join(f"{per_policy_kb(rows, key, i):.1f}" for key, _ in COLUMNS)
        print(f"| {row['policies']:,.0f} | {added} | {slope}{' (fixed costs in)' if i == 0 else ''} |")
    plot(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
