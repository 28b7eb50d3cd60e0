"""The demo application's objects: render.py's, with the workers' CPU requests trimmed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from demo_watch import ROOT

# ---------------------------------------------------------------------------------------------- the app

DEMO_DIR = ROOT / "manifests" / "examples" / "demo"
# Celery workers are sized from queue depth, never from CPU, so their CPU request only decides whether a
# pod fits on the node. The manifests ask 50m per worker; on a 2-CPU kind node whose control plane and
# add-ons already request ~1.3 CPU, six video workers next to four web pods would sit Pending
# ("Insufficient cpu"). The demo asks less; web keeps its 100m, which its CPU-utilization HPA divides by.
WORKER_CPU_REQUEST = "20m"


def demo_app(images: Mapping[str, str], key_prefix: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The demo application's objects (manifests/examples/demo/render.py) and what the demo changed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo_render", DEMO_DIR / "render.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    docs: list[dict[str, Any]] = module.render(dict(images), key_prefix=key_prefix)
    notes = []
    for d in docs:
        if d.get("kind") != "Deployment" or not d["metadata"]["name"].startswith("worker-"):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            requests = c.setdefault("resources", {}).setdefault("requests", {})
            old = requests.get("cpu")
            if old != WORKER_CPU_REQUEST:
                requests["cpu"] = WORKER_CPU_REQUEST
                notes.append(f"{d['metadata']['name']} cpu request {old} -> {WORKER_CPU_REQUEST}")
    return docs, notes
