"""The watcher's commands: policy, app, run (drive the load, show it live, record, plot) and plot."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

import demo_watch as package
from demo_watch import ROOT, TIER_ORDER
from demo_watch.app import demo_app
from demo_watch.load import LoadProgram, load_program, phase_at, web_points
from demo_watch.plot import plot, step_series
from demo_watch.policy import DEFAULT_FACTOR, EXAMPLE_POLICY, describe_shortening, shorten_policy
from demo_watch.sampling import Cluster, Prometheus, at_rest
from demo_watch.table import LiveView
from demo_watch.web_load import WebLoad, latency_json

PROMETHEUS = os.environ.get("DEMO_PROMETHEUS_URL", "http://127.0.0.1:30090")
SAMPLE_SECONDS = 2.0


# ------------------------------------------------------------------------------------------------- main


def cmd_policy(args: argparse.Namespace) -> int:
    doc = yaml.safe_load(Path(args.example).read_text())
    s = shorten_policy(doc, args.namespace, args.factor)
    yaml.safe_dump(s.policy, sys.stdout, sort_keys=False)
    print(
        f"The demo's ScalingPolicy is {Path(args.example).relative_to(ROOT)} with every window, period and "
        "cooldown "
        f"divided by {args.factor:g}, so the demo fits in minutes (the README keeps the seed's numbers). "
        "Demo rules, and in brackets the example's (or the HPA defaults where it sets none):",
        file=sys.stderr,
    )
    print("\n".join(describe_shortening(s)), file=sys.stderr)
    print(
        f'  and every query narrowed to namespace="{args.namespace}" (Prometheus is shared with the tests).',
        file=sys.stderr,
    )
    return 0


def cmd_app(args: argparse.Namespace) -> int:
    images = {
        "DEMO_IMAGE": args.demo_image,
        "EXPORTER_IMAGE": args.exporter_image,
        "REDIS_IMAGE": args.redis_image,
    }
    docs, notes = demo_app(images, args.key_prefix)
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    if notes:
        print(
            "The demo app is manifests/examples/demo as rendered, except the workers' CPU requests "
            f"({', '.join(notes)}): queue depth sizes them, and six video workers must fit on a 2-CPU node.",
            file=sys.stderr,
        )
    return 0


def _write_record(out: Path, record: Mapping[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo-run.json").write_text(json.dumps(record, indent=1))


def cmd_run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    samples_path = out / "demo-samples.jsonl"
    cluster = Cluster(args.namespace, args.policy)
    prom = Prometheus(PROMETHEUS, args.namespace)
    steps = load_program()

    view = LiveView()
    start = time.time()
    program = LoadProgram(args.namespace, args.loadgen, steps, Path(args.log))
    web = WebLoad(cluster.core, args.namespace, args.locust_image, web_points(), Path(args.log))
    record: dict[str, Any] = {
        "start": start,
        "namespace": args.namespace,
        "policy": args.policy,
        "title": f"scalekeeper demo, {datetime.fromtimestamp(start, UTC):%Y-%m-%d %H:%M} UTC: "
        f"ScalingPolicy {args.namespace}/{args.policy} (windows / {args.factor:g})",
        "program": [{"at": s.at, "label": s.label, "seconds": s.seconds} for s in steps],
        "samples": [],
        "events": [],
    }
    print("load program:")
    for s in steps:
        print(f"  +{s.at:>3g}s  {s.label}")
    print("live view every 2 s: Events scroll, the table stays below (Ctrl-C ends early and still plots)\n")

    interrupted = False

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        web.begin(timeout=args.max_seconds)
    except RuntimeError as exc:  # kubectl could not replace the locust pod: nothing has started yet
        print(f"demo_watch run: {exc}".strip(), file=sys.stderr)
        return 1
    program.begin(start)
    rest_since: float | None = None
    outcome = "settled"
    try:
        with samples_path.open("w") as rec:
            while True:
                now = time.time()
                rel = now - start
                try:
                    sample = cluster.sample()
                except Exception as exc:
                    sample = {"tiers": {}, "error": f"{type(exc).__name__}: {exc}"[:200]}
                sample["load"] = prom.instant()
                # locust's last interval, while it runs (after, the header would show a stale one)
                latency = [] if web.finished() else latency_json(web.intervals()[-1:], start)
                sample["latency"] = latency[0] if latency else None
                # Locust's clock starts with its process, a few seconds after the view's.
                origin = web.origin()
                shift = 0.0 if origin is None else origin - start
                sample["t"], sample["rel"] = now, round(rel, 2)
                try:
                    events = cluster.new_events(since=start - 1)
                except Exception:
                    events = []
                for ev in events:
                    ev["rel"] = round(ev["t"] - start, 2)
                record["samples"].append(sample)
                record["events"].extend(events)
                rec.write(json.dumps({k: v for k, v in sample.items() if k != "spec"}) + "\n")
                rec.flush()
                view.show(sample, [(ev, ev["rel"]) for ev in events], rel, phase_at(rel, steps, shift))
                load_over = rel > max(s.at + s.seconds for s in steps) + shift
                if program.finished() and web.finished() and load_over and at_rest(sample):
                    rest_since = rest_since or now
                    if now - rest_since >= 6:
                        break
                else:
                    rest_since = None
                if rel > args.max_seconds:
                    outcome = f"stopped after {args.max_seconds:g}s without every tier back at rest"
                    break
                time.sleep(max(0.0, SAMPLE_SECONDS - (time.time() - now)))
    except KeyboardInterrupt:
        interrupted = True
        outcome = "interrupted"
    finally:
        program.stop(interrupted=interrupted)
        web.stop()
    end = time.time()
    record["end"], record["outcome"] = end, outcome
    record["latency"] = latency_json(web.intervals(), start)
    origin = web.origin()
    record["web_shift"] = 0.0 if origin is None else round(origin - start, 2)
    for f in [*program.failures, *([web.failure] if web.failure else [])]:
        print(f"warning: {f}")
    print(f"\nlive part: {end - start:.0f}s, {outcome}.")
    scaled = [e for e in record["events"] if e["source"] == "policy" and e["reason"] == "Scaled"]
    holding = [e for e in record["events"] if e["source"] == "policy" and e["reason"] == "Holding"]
    protected = [
        e for e in record["events"] if e["source"] == "policy" and e["reason"] == "ProtectingBusyWorkers"
    ]
    bare = [e for e in record["events"] if e["source"] == "policy" and e["reason"] == "ScaleDownUnprotected"]
    print(
        f"Events: {len(scaled)} Scaled, {len(holding)} Holding, {len(protected)} ProtectingBusyWorkers, "
        f"{len(bare)} ScaleDownUnprotected; peak replicas: "
        + ", ".join(
            f"{tier} {max(y)}"
            for tier in TIER_ORDER
            if (y := step_series(record["samples"], tier, "replicas")[1])
        )
    )
    print(latency_summary(record["latency"]))
    record["load"] = prom.series(start - 5, end + 1)
    _write_record(out, record)
    png = out / "demo.png"
    plot(record, png)
    print(f"recorded: {samples_path} (every sample), {out / 'demo-run.json'} (samples, Events, load)")
    print(f"plot: {png.resolve()}")
    return 130 if interrupted else 0


def latency_summary(latency: list[dict[str, Any]]) -> str:
    """One line on web's latency as locust saw it, over the intervals in which requests completed."""
    served = [i for i in latency if i["requests"]]
    if not served:
        return "web latency: no interval from locust (see the load log)"
    p95s = sorted(float(i["p95"]) for i in served)
    failed = sum(int(i["failures"]) for i in served)
    return (
        f"web latency (locust, per 10 s): p95 median {p95s[len(p95s) // 2]:.0f} ms, worst {p95s[-1]:.0f} ms "
        f"over {len(served)} intervals; {failed} of {sum(int(i['requests']) for i in served)} requests failed"
    )


def cmd_plot(args: argparse.Namespace) -> int:
    out = Path(args.out)
    record = json.loads((out / "demo-run.json").read_text())
    plot(record, out / "demo.png")
    print(f"plot: {(out / 'demo.png').resolve()}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m demo_watch", description=(package.__doc__ or "").split("\n")[0]
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("policy", help="print the demo's ScalingPolicy (example, shortened, scoped)")
    pp.add_argument("--example", default=str(EXAMPLE_POLICY))
    pp.add_argument("--namespace", default="demo")
    pp.add_argument("--factor", type=float, default=DEFAULT_FACTOR)
    pa = sub.add_parser("app", help="print the demo app's objects (render.py, worker CPU requests trimmed)")
    pa.add_argument("--demo-image", required=True)
    pa.add_argument("--exporter-image", required=True)
    pa.add_argument("--redis-image", required=True)
    pa.add_argument("--key-prefix", default="demo:")
    pr = sub.add_parser("run", help="drive the load, show the tiers live, record, plot")
    pr.add_argument("--namespace", default="demo")
    pr.add_argument("--policy", default="demo")
    pr.add_argument("--loadgen", default="loadgen", help="pod the video steps run in (the demo image)")
    pr.add_argument(
        "--locust-image", required=True, help="web's load generator (hack/loadtest-image.sh prints it)"
    )
    pr.add_argument("--out", default=str(ROOT / "out"))
    pr.add_argument("--log", default=str(ROOT / "logs" / "demo-load.log"))
    pr.add_argument("--factor", type=float, default=DEFAULT_FACTOR, help="only for the plot's title")
    pr.add_argument("--max-seconds", type=float, default=480)
    pl = sub.add_parser("plot", help="re-draw demo.png from demo-run.json")
    pl.add_argument("--out", default=str(ROOT / "out"))
    args = p.parse_args(argv)
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "policy": cmd_policy,
        "app": cmd_app,
        "run": cmd_run,
        "plot": cmd_plot,
    }
    return handlers[args.cmd](args)
