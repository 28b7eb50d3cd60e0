#!/usr/bin/env python3
"""Render the demo application's manifests (k8s/*.yaml) with image references and settings filled in.

  # with manifests/examples/demo on sys.path (or load render.py by path):
  from render import render
  docs = render({"DEMO_IMAGE": "localhost:5001/scalekeeper-demo:dev", "REDIS_IMAGE": REDIS_IMAGE,
                 "EXPORTER_IMAGE": "localhost:5001/scalekeeper-celery-exporter:dev"})

  python manifests/examples/demo/render.py [--demo-image REF] [--exporter-image REF] [--redis-image REF] \\
      [--broker-url URL] [--key-prefix P] [--celery-app NAME] | kubectl -n NS apply -f -

Placeholders: ${DEMO_IMAGE}, ${EXPORTER_IMAGE}, ${REDIS_IMAGE} (required), ${BROKER_URL} (default: the
cluster's shared Redis, redis://redis.scalekeeper-system.svc.cluster.local:6379/0), ${KEY_PREFIX} (default
empty), ${CELERY_APP} (the `app` label of the exporter's series; default `demo`, the example policy's name).
No object names a namespace: apply into any. Values are substituted into parsed strings, so no value can
change the YAML's structure.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
K8S_DIR = HERE / "k8s"
DEFAULT_BROKER_URL = "redis://redis.scalekeeper-system.svc.cluster.local:6379/0"
DEFAULT_DEMO_IMAGE = "localhost:5001/scalekeeper-demo:dev"
DEFAULT_EXPORTER_IMAGE = "localhost:5001/scalekeeper-celery-exporter:dev"
DEFAULT_CELERY_APP = "demo"
REQUIRED = ("DEMO_IMAGE", "EXPORTER_IMAGE", "REDIS_IMAGE")
_ALIASES = {"demo": "DEMO_IMAGE", "exporter": "EXPORTER_IMAGE", "redis": "REDIS_IMAGE"}
_PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")


def _values(
    images: dict[str, str],
    broker_url: str | None,
    key_prefix: str | None,
    celery_app: str,
    extra: dict[str, str] | None,
) -> dict[str, str]:
    values: dict[str, str] = {
        "BROKER_URL": broker_url or DEFAULT_BROKER_URL,
        "KEY_PREFIX": key_prefix or "",
        "CELERY_APP": celery_app,
    }
    for k, v in images.items():
        values[_ALIASES.get(k, k)] = v
    values.update(extra or {})
    for name in REQUIRED:
        ref = values.get(name, "")
        if not ref or any(c.isspace() for c in ref) or '"' in ref:
            raise ValueError(f"image {name} missing or malformed: {ref!r}")
    return values


def _fill(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {k: _fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in values:
                raise ValueError(f"no value for placeholder ${{{m.group(1)}}}")
            return values[m.group(1)]

        return _PLACEHOLDER.sub(sub, node)
    return node


def render(
    images: dict[str, str],
    *,
    broker_url: str | None = None,
    key_prefix: str | None = None,
    celery_app: str = DEFAULT_CELERY_APP,
    extra: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Every object of the demo, in apply order (config, read tier, web, workers, exporter).

    ``images``: {"DEMO_IMAGE": ref, "EXPORTER_IMAGE": ref, "REDIS_IMAGE": ref} (or {"demo": ref,
    "exporter": ref, "redis": ref}). ``broker_url``: the Celery broker and bookkeeping Redis.
    ``key_prefix``: prefix of every key there, so several installations (one per namespace) can share one
    Redis database. ``celery_app``: the `app` label of the queue series, which a policy's default queries
    match (its name unless `metrics.app` says otherwise).
    """
    values = _values(images, broker_url, key_prefix, celery_app, extra)
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S_DIR.glob("*.yaml")):
        with path.open() as f:
            docs.extend(_fill(d, values) for d in yaml.safe_load_all(f) if d)
    return docs


def _images_env() -> dict[str, str]:
    state = Path(os.environ.get("SCALEKEEPER_CACHE", Path.home() / ".cache" / "scalekeeper")) / "state"
    out: dict[str, str] = {}
    try:
        for line in (state / "images.env").read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep:
                out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    env = _images_env()
    p = argparse.ArgumentParser(description="Render the scalekeeper demo manifests to YAML on stdout.")
    p.add_argument("--demo-image", default=os.environ.get("DEMO_IMAGE") or DEFAULT_DEMO_IMAGE)
    p.add_argument("--exporter-image", default=os.environ.get("EXPORTER_IMAGE") or DEFAULT_EXPORTER_IMAGE)
    p.add_argument("--redis-image", default=os.environ.get("REDIS_IMAGE") or env.get("REDIS_IMAGE"))
    p.add_argument("--broker-url", default=os.environ.get("BROKER_URL") or None)
    p.add_argument("--key-prefix", default=os.environ.get("KEY_PREFIX") or None)
    p.add_argument("--celery-app", default=DEFAULT_CELERY_APP)
    args = p.parse_args(argv)
    if not args.redis_image:
        p.error("no Redis image: pass --redis-image, set REDIS_IMAGE, or run hack/addons.sh images")
    docs = render(
        {
            "DEMO_IMAGE": args.demo_image,
            "EXPORTER_IMAGE": args.exporter_image,
            "REDIS_IMAGE": args.redis_image,
        },
        broker_url=args.broker_url,
        key_prefix=args.key_prefix,
        celery_app=args.celery_app,
    )
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False, default_flow_style=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
