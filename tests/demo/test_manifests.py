"""The demo's manifests as render() gives them, its image recipe and its pins: the properties the end-to-end
tests and the exactly-once argument rely on."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from typing import Any

import pytest
import yaml
from scalekeeper_demo.celery_app import make_app

from .conftest import DEMO_DIR

IMAGES = {
    "DEMO_IMAGE": "localhost:5001/scalekeeper-demo:dev",
    "EXPORTER_IMAGE": "localhost:5001/scalekeeper-celery-exporter:dev",
    "REDIS_IMAGE": "localhost:5001/redis:7.0",
}


def _render_module() -> Any:
    spec = importlib.util.spec_from_file_location("demo_render", DEMO_DIR / "render.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return _render_module().render(IMAGES)


def _by(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def test_objects_and_no_namespace(docs: list[dict[str, Any]]) -> None:
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert names == {
        ("ConfigMap", "demo-config"),
        ("Deployment", "db-primary"),
        ("Service", "db-primary"),
        ("StatefulSet", "db-replica"),
        ("Service", "db-replica-headless"),
        ("Service", "db-replica"),
        ("Deployment", "web"),
        ("Service", "web"),
        ("Deployment", "worker-emails"),
        ("Deployment", "worker-video"),
        ("Deployment", "worker-reports"),
        ("Deployment", "queue-exporter"),
        ("Service", "queue-exporter"),
    }
    assert all("namespace" not in d["metadata"] for d in docs)
    text = yaml.safe_dump_all(docs)
    assert "${" not in text
    images = set(re.findall(r"image: (\S+)", text))
    assert images == set(IMAGES.values())
    cfg = _by(docs, "ConfigMap", "demo-config")["data"]
    assert cfg["BROKER_URL"] == "redis://redis.scalekeeper-system.svc.cluster.local:6379/0"


def test_render_options_and_errors() -> None:
    render = _render_module().render
    docs = render(
        {"demo": "d:1", "exporter": "e:1", "redis": "r:1"},
        broker_url="redis://x:6379/3",
        key_prefix="ns1:",
        celery_app="shop",
    )
    cfg = _by(docs, "ConfigMap", "demo-config")["data"]
    assert (cfg["BROKER_URL"], cfg["KEY_PREFIX"]) == ("redis://x:6379/3", "ns1:")
    (exporter,) = _by(docs, "Deployment", "queue-exporter")["spec"]["template"]["spec"]["containers"]
    assert exporter["args"][:2] == ["--app", "shop"]
    with pytest.raises(ValueError, match="REDIS_IMAGE"):
        render({"DEMO_IMAGE": "d:1", "EXPORTER_IMAGE": "e:1"})
    with pytest.raises(ValueError, match="EXPORTER_IMAGE"):
        render({"DEMO_IMAGE": "d:1", "REDIS_IMAGE": "r:1"})


def test_the_exporter_reads_the_installations_keys_with_its_prefix(docs: list[dict[str, Any]]) -> None:
    # The exporter, not the demo, owns the queue metrics: the demo passes only its broker, key prefix and app.
    (exporter,) = _by(docs, "Deployment", "queue-exporter")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["valueFrom"]["configMapKeyRef"]["key"] for e in exporter["env"]}
    assert env == {"BROKER_URL": "BROKER_URL", "REDIS_KEY_PREFIX": "KEY_PREFIX"}
    assert exporter["image"] == IMAGES["EXPORTER_IMAGE"]
    assert _by(docs, "Deployment", "queue-exporter")["spec"]["strategy"] == {"type": "Recreate"}


def test_cli_prints_the_same_objects(docs: list[dict[str, Any]]) -> None:
    out = subprocess.run(
        [sys.executable, str(DEMO_DIR / "render.py"), "--demo-image", IMAGES["DEMO_IMAGE"],
         "--exporter-image", IMAGES["EXPORTER_IMAGE"], "--redis-image", IMAGES["REDIS_IMAGE"],
         "--broker-url", "redis://redis.scalekeeper-system.svc.cluster.local:6379/0"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert [d for d in yaml.safe_load_all(out.stdout) if d] == docs


def test_scrape_annotations_match_ports(docs: list[dict[str, Any]]) -> None:
    for name in ("web", "queue-exporter"):
        tpl = _by(docs, "Deployment", name)["spec"]["template"]
        ann = tpl["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true"
        ports = {p["containerPort"] for c in tpl["spec"]["containers"] for p in c.get("ports", [])}
        assert int(ann["prometheus.io/port"]) in ports


def test_scaled_objects_leave_replicas_to_the_operator(docs: list[dict[str, Any]]) -> None:
    web = _by(docs, "Deployment", "web")
    assert "replicas" not in web["spec"]
    assert web["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    for name in ("worker-emails", "worker-video", "worker-reports"):
        assert "replicas" not in _by(docs, "Deployment", name)["spec"]
    sts = _by(docs, "StatefulSet", "db-replica")
    assert "replicas" not in sts["spec"]
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    i = args.index("--replicaof")
    assert args[i + 1 : i + 3] == ["db-primary", "6379"]
    cfg = _by(docs, "ConfigMap", "demo-config")["data"]
    assert cfg["READ_REDIS_URL"] == "redis://db-replica:6379/0"


def test_workers_shut_down_warm_within_grace_and_visibility(docs: list[dict[str, Any]]) -> None:
    cfg = _by(docs, "ConfigMap", "demo-config")["data"]
    max_task = float(cfg["MAX_TASK_SECONDS"])
    visibility = float(cfg["VISIBILITY_TIMEOUT"])
    for queue in ("emails", "video", "reports"):
        pod = _by(docs, "Deployment", f"worker-{queue}")["spec"]["template"]["spec"]
        cmd = pod["containers"][0]["command"]
        assert cmd[:4] == [
            "celery",
            "-A",
            "scalekeeper_demo.celery_app",
            "worker",
        ]  # exec form: celery is PID 1
        assert cmd[cmd.index("-Q") + 1] == queue
        prefetch = int(cmd[cmd.index("--prefetch-multiplier") + 1])
        assert int(cmd[cmd.index("--concurrency") + 1]) >= 1
        # warm shutdown finishes the running tasks before the kubelet's SIGKILL
        assert pod["terminationGracePeriodSeconds"] > max_task + 10
        # no live worker's reserved message is restored to another one
        assert visibility > (prefetch + 1) * max_task
        assert pod["containers"][0]["envFrom"] == [{"configMapRef": {"name": "demo-config"}}]


def test_celery_settings_for_exactly_once() -> None:
    conf = make_app("redis://127.0.0.1:1/0", visibility_timeout=123).conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.broker_transport_options["visibility_timeout"] == 123
    assert [q.name for q in conf.task_queues] == ["emails", "video", "reports"]


def test_image_recipe_and_pins() -> None:
    dockerfile = (DEMO_DIR / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim-bookworm" in dockerfile
    for bk_only in (
        "--chmod",
        "--mount",
        "# syntax=",
        "--link",
        "<<",
    ):  # the legacy builder has none of these
        assert bk_only not in dockerfile, bk_only
    assert re.search(r"^USER 10001", dockerfile, re.M)
    pins = dict(
        line.split("==", 1)
        for line in (DEMO_DIR / "requirements.txt").read_text().splitlines()
        if line and not line.startswith("#")
    )
    norm = {k.lower().replace("_", "-"): v for k, v in pins.items()}
    assert (norm["celery"], norm["kombu"], norm["redis"], norm["prometheus-client"]) == (
        "5.6.3",
        "5.7.0",
        "8.1.0",
        "0.26.0",
    )
    deps = tomllib.loads((DEMO_DIR / "app" / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name, version = re.split(r"(?:\[[a-z]+\])?==", dep)
        assert norm[name.lower()] == version, dep
