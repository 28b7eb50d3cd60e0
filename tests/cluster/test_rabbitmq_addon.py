"""The cluster's RabbitMQ (hack/addons/rabbitmq.yaml): a real Celery producer publishes to it, its management
API counts what was published within about two seconds (the Celery exporter reads queues there), it answers
by its Service name from inside the cluster, and it comes back ready after its pod is deleted, empty."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import select
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery
from kubernetes import client

from .conftest import Cluster, tool_env
from .waiting import wait_for

pytestmark = pytest.mark.cluster

NS = "scalekeeper-system"
# Queues report every second and the management plugin aggregates every second (hack/addons/rabbitmq.yaml): a
# publish shows 1.2-2.0 s later, measured; the rest is slack for the port-forward and a busy 2-core machine.
COUNTED_WITHIN = 2.5


@dataclass(frozen=True)
class Broker:
    user: str
    password: str
    amqp_port: int
    management_port: int

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.amqp_port}//"

    def api(self, method: str, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.management_port}/api/{path}",
            method=method,
            headers={
                "Authorization": "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as r:
                body = r.read()
                return r.status, json.loads(body) if body else None
        except urllib.error.HTTPError as e:
            return e.code, None

    def queue(self, name: str) -> tuple[int, Any]:
        return self.api("GET", f"queues/%2F/{urllib.parse.quote(name, safe='')}")


def credentials(cluster: Cluster) -> tuple[str, str]:
    data = client.CoreV1Api(cluster.api).read_namespaced_secret("rabbitmq", NS).data
    return base64.b64decode(data["username"]).decode(), base64.b64decode(data["password"]).decode()


@contextlib.contextmanager
def port_forward(cluster: Cluster, timeout: float = 30.0) -> Iterator[Broker]:
    """`kubectl port-forward` to the Service's AMQP and management ports on free loopback ports."""
    user, password = credentials(cluster)
    proc = subprocess.Popen(
        ["kubectl", "-n", NS, "port-forward", "svc/rabbitmq", ":5672", ":15672", "--address", "127.0.0.1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**tool_env(), "KUBECONFIG": cluster.kubeconfig},
        bufsize=0,  # unbuffered: select() sees every line that arrives, none waits in a buffer
    )
    assert proc.stdout is not None
    ports: dict[int, int] = {}
    seen = b""
    try:
        deadline = time.monotonic() + timeout
        while len(ports) < 2:
            left = deadline - time.monotonic()
            if left <= 0 or proc.poll() is not None:
                pytest.fail(f"kubectl port-forward did not forward both ports: {seen.decode()!r}")
            if select.select([proc.stdout], [], [], left)[0]:
                line = proc.stdout.readline()
                seen += line
                if m := re.search(rb"127\.0\.0\.1:(\d+) -> (\d+)", line):
                    ports[int(m[2])] = int(m[1])
        yield Broker(user, password, ports[5672], ports[15672])
    finally:
        proc.terminate()
        proc.wait(10)


def rabbitmq_pod(cluster: Cluster) -> client.V1Pod | None:
    """The broker's one pod when it is ready and not being deleted."""
    for pod in client.CoreV1Api(cluster.api).list_namespaced_pod(NS, label_selector="app=rabbitmq").items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if ready and pod.metadata.deletion_timestamp is None:
            return pod
    return None


def publish(broker: Broker, queue: str, count: int) -> None:
    """Send `count` tasks to `queue` the way a Celery application does (the queue declared on the way)."""
    app = Celery("rabbitmq-addon-test", broker=broker.url)
    app.conf.broker_connection_retry_on_startup = False
    try:
        with app.producer_or_acquire() as producer:
            for i in range(count):
                app.send_task("probe.noop", args=(i,), queue=queue, producer=producer)
    finally:
        app.close()


def test_published_tasks_are_counted_by_the_management_api_within_2s(cluster: Cluster) -> None:
    wait_for("the RabbitMQ pod to be ready", lambda: rabbitmq_pod(cluster), timeout=120)
    queue, count = f"t-{uuid.uuid4().hex[:8]}", 25
    with port_forward(cluster) as broker:
        try:
            publish(broker, queue, count)
            published = time.monotonic()
            wait_for(
                f"messages_ready == {count} on {queue}",
                lambda: (q := broker.queue(queue))[0] == 200 and q[1]["messages_ready"] == count,
                timeout=30,
                interval=0.1,
            )
            counted_after = time.monotonic() - published
            status, body = broker.queue(queue)
            assert status == 200
            assert (body["messages_ready"], body["messages_unacknowledged"], body["consumers"]) == (
                count,
                0,
                0,
            )
            assert counted_after <= COUNTED_WITHIN, f"counted {counted_after:.2f} s after the last publish"
            print(f"\n{count} tasks counted {counted_after:.2f} s after the last publish")
        finally:
            broker.api("DELETE", f"queues/%2F/{queue}")


# Run in a pod: AMQP's protocol header, answered with Connection.Start (a method frame, type 1, on channel 0),
# then the management API's whoami with the Secret's user, both through the Service's DNS name.
SERVICE_PROBE = """
import base64, json, socket, sys, time, urllib.request
host, user, password = sys.argv[1:]
for _ in range(60):
    try:
        with socket.create_connection((host, 5672), timeout=5) as s:
            s.sendall(b"AMQP\\x00\\x00\\x09\\x01")
            frame = s.recv(7)
        break
    except OSError as e:
        print("retry", e)
        time.sleep(1)
else:
    raise SystemExit(1)
auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
request = urllib.request.Request(f"http://{host}:15672/api/whoami", headers={"Authorization": auth})
who = json.load(urllib.request.urlopen(request, timeout=5))
print(json.dumps({"frame_type": frame[0], "channel": int.from_bytes(frame[1:3], "big"), "user": who["name"]}))
"""


def test_answers_by_its_service_name_from_a_pod(cluster: Cluster, namespace: str) -> None:
    user, password = credentials(cluster)
    command = ["python3", "-c", SERVICE_PROBE, f"rabbitmq.{NS}.svc.cluster.local", user, password]
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name="amqp-probe"),
            spec=client.V1PodSpec(
                restart_policy="Never",
                containers=[client.V1Container(name="main", image=cluster.operator_image, command=command)],
            ),
        ),
    )
    phase = wait_for(
        "the probe pod to finish",
        lambda: (
            (p := core.read_namespaced_pod("amqp-probe", namespace).status.phase) in ("Succeeded", "Failed")
            and p
        ),
        timeout=120,
    )
    logs = core.read_namespaced_pod_log("amqp-probe", namespace)
    assert phase == "Succeeded", logs
    assert json.loads(logs.strip().splitlines()[-1]) == {"frame_type": 1, "channel": 0, "user": user}


def test_comes_back_ready_after_its_pod_is_deleted_and_empty(cluster: Cluster) -> None:
    old = wait_for("the RabbitMQ pod to be ready", lambda: rabbitmq_pod(cluster), timeout=120)
    before = f"t-{uuid.uuid4().hex[:8]}"
    with port_forward(cluster) as broker:
        publish(broker, before, 3)
        wait_for(
            f"3 ready on {before}",
            lambda: (q := broker.queue(before))[0] == 200 and q[1]["messages_ready"] == 3,
        )

    client.CoreV1Api(cluster.api).delete_namespaced_pod(old.metadata.name, NS)
    new = wait_for(
        "a new RabbitMQ pod to be ready",
        lambda: (p := rabbitmq_pod(cluster)) is not None and p.metadata.uid != old.metadata.uid and p,
        timeout=180,
    )
    started = new.status.container_statuses[0].state.running.started_at
    ready_at = next(c.last_transition_time for c in new.status.conditions if c.type == "Ready")
    took = (ready_at - started).total_seconds()
    print(f"\nnew pod {new.metadata.name}: ready {took:.0f} s after its container started")

    after = f"t-{uuid.uuid4().hex[:8]}"
    with port_forward(cluster) as broker:
        try:
            # Data lives on an emptyDir: the new pod knows nothing of the old one's queues.
            assert broker.queue(before)[0] == 404
            publish(broker, after, 2)
            wait_for(
                f"2 ready on {after}",
                lambda: (q := broker.queue(after))[0] == 200 and q[1]["messages_ready"] == 2,
            )
        finally:
            broker.api("DELETE", f"queues/%2F/{after}")
