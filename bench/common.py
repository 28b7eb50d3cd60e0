"""What the benches share (bench.reaction, bench.soak, bench.scale, bench.quality...): where the cluster's
state and tools are, its env files, kubectl, the ScalingPolicy CRD, waiting for a condition, the demo app's
renderer and its Redis keys, an operator run as a local process and the lease it takes, figures from /proc,
the lines that describe the machine, and the command that reproduces a run.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from scalekeeper.kube.membership import GROUP_LABEL
from scalekeeper.model.base import CRD_NAME

ROOT = Path(__file__).resolve().parents[1]
# As hack/lib.sh lays it out: cluster.env and the kubeconfig in state/, the pinned tools in bin/current/.
CACHE = Path(os.environ.get("SCALEKEEPER_CACHE", Path.home() / ".cache" / "scalekeeper"))
STATE = CACHE / "state"
KUBECTL = str(CACHE / "bin" / "current" / "kubectl")
LOGS = ROOT / "logs"
POLICY_CRD = ROOT / "crds" / f"{CRD_NAME}.yaml"
DEMO_DIR = ROOT / "manifests" / "examples" / "demo"
# The lease of the operator installed in the cluster (and of the tests' session operator): a bench's own
# operator never takes it, and a bench never deletes it.
SHARED_LEASE = "scalekeeper-leader"
OPERATOR_COMMAND = (sys.executable, "-m", "scalekeeper.cli", "run")


# --------------------------------------------------------------------------- the cluster


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as hack/cluster.sh writes state/cluster.env."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def cluster_env() -> dict[str, str]:
    """KUBECONFIG, PROMETHEUS_URL, SCALEKEEPER_REGISTRY... of the cluster `make cluster-up` brought up."""
    return env_file(STATE / "cluster.env")


def images_env() -> dict[str, str]:
    """REDIS_IMAGE... the images hack/cluster.sh built or pulled (state/images.env)."""
    return env_file(STATE / "images.env")


def run_kubectl(
    kubeconfig: str, *args: str, stdin: str | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl from the pinned build; the caller looks at the return code."""
    return subprocess.run(
        [KUBECTL, "--kubeconfig", kubeconfig, *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    """kubectl's output; its stderr in the error when it fails."""
    out = run_kubectl(kubeconfig, *args, stdin=stdin)
    if out.returncode:
        raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr}")
    return out.stdout


def apply_object(kubeconfig: str, namespace: str, obj: Mapping[str, Any]) -> None:
    """`kubectl apply` of one object (or a List) into `namespace`."""
    kubectl(kubeconfig, "-n", namespace, "apply", "-f", "-", stdin=json.dumps(obj))


def apply_policy_crd(kubeconfig: str) -> None:
    kubectl(kubeconfig, "apply", "--server-side", "-f", str(POLICY_CRD))
    # On a fresh cluster, a policy created before the CRD is Established gets a 404.
    kubectl(
        kubeconfig,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        f"crd/{CRD_NAME}",
    )


def policy_crd_installed(kubeconfig: str) -> bool:
    return run_kubectl(kubeconfig, "get", "crd", CRD_NAME).returncode == 0


def apiservice_condition(kubeconfig: str, name: str) -> str:
    """The status of the APIService's Available condition ("True", "False", "" when it has none);
    RuntimeError when kubectl cannot read it (not installed)."""
    return kubectl(
        kubeconfig,
        "get",
        "apiservice",
        name,
        "-o",
        "jsonpath={.status.conditions[?(@.type=='Available')].status}",
    )


def apiservice_available(kubeconfig: str, name: str) -> bool:
    try:
        return apiservice_condition(kubeconfig, name).strip() == "True"
    except RuntimeError:
        return False


def wait_namespace_gone(core: client.CoreV1Api, namespace: str, timeout: float) -> bool:
    """Poll every second until the namespace is gone (404); False when it is still there after `timeout` s."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            core.read_namespace(namespace)
        except ApiException as err:
            if err.status == 404:
                return True
        time.sleep(1)
    return False


def redis_client(url: str) -> Any:
    """A client of the cluster's Redis (redis-py: the demo's dependency, in the dev environment)."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=10)


def delete_prefixed(redis: Any, prefix: str) -> int:
    """Delete every Redis key starting with `prefix` (a run's own); how many there were."""
    keys = list(redis.scan_iter(match=f"{prefix}*", count=1000))
    for i in range(0, len(keys), 500):
        redis.delete(*keys[i : i + 500])
    return len(keys)


def demo_render() -> ModuleType:
    """The demo app's renderer, manifests/examples/demo/render.py, loaded by path as its README says (its
    folder is not a package)."""
    spec = importlib.util.spec_from_file_location("demo_render", DEMO_DIR / "render.py")
    assert spec is not None and spec.loader is not None
    render = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render)
    return render


def prometheus_scalar(url: str, query: str, timeout: float = 10.0) -> float | None:
    """The first sample of an instant query, None when the result is empty."""
    with urllib.request.urlopen(
        f"{url}/api/v1/query?query={urllib.parse.quote(query)}", timeout=timeout
    ) as resp:
        result = json.load(resp)["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def prometheus_value(url: str, query: str) -> float | None:
    # Polled every 50 ms while a step waits: a slow answer is dropped rather than waited for.
    return prometheus_scalar(url, query, timeout=2)


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --------------------------------------------------------------------------- the operator as a local process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def operator_env(
    *,
    kubeconfig: str,
    prometheus: str,
    namespaces: str,
    lease: str,
    lease_namespace: str,
    identity: str,
    metrics_port: int = 0,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of `scalekeeper run` serving only `namespaces`, under a lease of its own (so it never
    competes with the operator installed in the cluster), health server off, metrics on `metrics_port`
    (0: off)."""
    if lease == SHARED_LEASE:
        raise ValueError(f"a bench's operator takes a lease of its own, not {SHARED_LEASE}")
    return {
        **os.environ,
        "KUBECONFIG": kubeconfig,
        "SCALEKEEPER_PROMETHEUS_URL": prometheus,
        "SCALEKEEPER_NAMESPACES": namespaces,
        "SCALEKEEPER_LEASE_NAME": lease,
        "SCALEKEEPER_LEASE_NAMESPACE": lease_namespace,
        "SCALEKEEPER_METRICS_PORT": str(metrics_port),
        "SCALEKEEPER_HEALTH_PORT": "0",
        "POD_NAME": identity,
        **(extra or {}),
    }


def start_operator_process(
    env: Mapping[str, str],
    log_path: Path,
    command: Sequence[str] = OPERATOR_COMMAND,
    new_session: bool = False,
) -> subprocess.Popen[bytes]:
    """The operator with its stdout and stderr in `log_path` (overwritten)."""
    return start_process(command, env, log_path, new_session)


def start_local_operator(
    kubeconfig: str,
    prometheus: str,
    namespace: str,
    *,
    lease: str,
    lease_namespace: str,
    identity: str,
    log_name: str,
    extra: Mapping[str, str] | None = None,
    crd_if_missing: bool = False,
) -> subprocess.Popen[bytes]:
    """The operator as a local process serving only `namespace` under a lease of its own, logging to
    logs/<log_name>; the ScalingPolicy CRD is applied first (with `crd_if_missing`, only when not there)."""
    if not crd_if_missing or not policy_crd_installed(kubeconfig):
        apply_policy_crd(kubeconfig)
    env = operator_env(
        kubeconfig=kubeconfig,
        prometheus=prometheus,
        namespaces=namespace,
        lease=lease,
        lease_namespace=lease_namespace,
        identity=identity,
        extra=extra,
    )
    return start_operator_process(env, LOGS / log_name)


def start_process(
    command: Sequence[str], env: Mapping[str, str], log_path: Path, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """`command` with its stdout and stderr in `log_path` (overwritten)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # The child keeps its own copy of the file descriptor; ours can close at once.
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(command),
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (the operator releases its policies and deletes its member Lease), SIGKILL after `timeout`
    seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def delete_lease(kubeconfig: str, namespace: str, name: str) -> None:
    """Delete the member Leases of a bench's own operators (the group `name`): a stopped member deletes its
    own, a killed one leaves it, and they pile up in the namespace. Best effort, at cleanup: a failure is
    said, not raised."""
    if name == SHARED_LEASE:
        raise ValueError(f"{SHARED_LEASE} belongs to the operator installed in the cluster")
    out = run_kubectl(kubeconfig, "-n", namespace, "delete", "lease", "-l", f"{GROUP_LABEL}={name}")
    if out.returncode:
        print(f"could not delete lease {namespace}/{name}: {out.stderr.strip()}", file=sys.stderr)


# --------------------------------------------------------------------------- the machine


def cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return None


def memory_total_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


def describe_machine(api: client.ApiClient) -> str:
    """The machine and the cluster a figure was measured on, and how busy the machine was at the start."""
    version = client.VersionApi(api).get_code()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu_model() or platform.processor() or 'unknown'}), "
        f"{memory_total_gib():.1f} GiB memory, "
        f"{platform.platform()}, Python {platform.python_version()}; kind cluster Kubernetes "
        f"{version.git_version} on the same machine, shared (load average {load} when this started)"
    )


def machine() -> str:
    """The machine a figure was measured on, without a cluster."""
    return (
        f"{len(os.sched_getaffinity(0))} CPUs (nproc), {cpu_model() or 'unknown CPU'}, Python "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )


def host_line() -> str:
    """The machine in a few words: its name, cores and platform."""
    return f"{platform.node()} {os.cpu_count()} cores, {platform.platform()}"


# --------------------------------------------------------------------------- the run


def wait_for(
    what: str,
    check: Callable[[], object],
    timeout: float,
    every: float = 0.5,
    retry_on: tuple[type[Exception], ...] = (),
) -> None:
    """Poll `check` every `every` s until it answers something true (at least once, even with no time
    left); an exception of a type in `retry_on` counts as a false answer. TimeoutError naming `what` after
    `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except retry_on:
            pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does, through every cleanup."""

    def raise_interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def reproduce_command(module: str, args: argparse.Namespace) -> str:
    """The command with every option spelled out (those set), so a changed default cannot change the run."""
    options: list[str] = []
    for name, value in vars(args).items():
        flag = f"--{name.replace('_', '-')}"
        if value is None or value is False:
            continue
        if value is True:  # a store_true switch takes no value
            options.append(flag)
            continue
        shown = value.relative_to(ROOT) if isinstance(value, Path) and value.is_relative_to(ROOT) else value
        options += [flag, str(shown)]
    return f"PYTHONPATH=operator .venv/bin/python -m {module} " + shlex.join(options)


def pushed_digest(ref: str) -> str:
    """A pushed image's reference by digest: its tag is reused by every build, and a node that already holds
    the tag would run the old image."""
    repo = ref.rsplit(":", 1)[0]
    digests = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{json .RepoDigests}}", ref],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (pushed,) = [d for d in json.loads(digests) if d.startswith(f"{repo}@")]
    return str(pushed)


def celery_worker_deployment(
    name: str,
    image: str,
    queue: str,
    env: Mapping[str, str],
    *,
    concurrency: int,
    prefetch: int,
    replicas: int = 1,
    grace: int = 5,
) -> dict[str, Any]:
    """A plain `celery worker` Deployment of the demo's app on `queue`, with stock heartbeats and the app's
    events; its Celery hostname `<name>@<pod>`, as the exporter's `pod` label reads it."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": {"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True},
                    "terminationGracePeriodSeconds": grace,
                    "containers": [
                        {
                            "name": "worker",
                            "image": image,
                            "command": [
                                *("celery", "-A", "scalekeeper_demo.celery_app", "worker", "-Q", queue),
                                *("--concurrency", str(concurrency), "--prefetch-multiplier", str(prefetch)),
                                *("--hostname", f"{name}@%h", "--loglevel", "INFO"),
                            ],
                            "env": [{"name": k, "value": v} for k, v in {"QUEUES": queue, **env}.items()],
                            "resources": {"requests": {"cpu": "20m", "memory": "96Mi"}},
                        }
                    ],
                },
            },
        },
    }
