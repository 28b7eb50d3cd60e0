"""The cluster itself: what every other end-to-end test stands on, proven against the real API server."""

from __future__ import annotations

import json
import subprocess
import urllib.request
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from .conftest import Cluster, kubectl
from .waiting import wait_deleted, wait_for

pytestmark = pytest.mark.cluster


def _python_pod(name: str, image: str, code: str, labels: dict[str, str] | None = None) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels=labels or {}),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[client.V1Container(name="main", image=image, command=["python3", "-c", code])],
        ),
    )


def _pod_logs_when_done(core: client.CoreV1Api, ns: str, name: str, timeout: float = 120) -> tuple[str, str]:
    phase = wait_for(
        f"pod {ns}/{name} to finish",
        lambda: (p := core.read_namespaced_pod(name, ns).status.phase) in ("Succeeded", "Failed") and p,
        timeout=timeout,
    )
    return str(phase), core.read_namespaced_pod_log(name, ns)


def test_deployment_from_project_image_scales_and_serves_by_dns(cluster: Cluster, namespace: str) -> None:
    apps, core = client.AppsV1Api(cluster.api), client.CoreV1Api(cluster.api)
    labels = {"app": "hello"}
    serve = (
        "import http.server,socket\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "  def do_GET(self):\n"
        "    b=socket.gethostname().encode()\n"
        "    self.send_response(200); self.end_headers(); self.wfile.write(b)\n"
        "http.server.HTTPServer(('',8080),H).serve_forever()\n"
    )
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="hello"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[
                            client.V1Container(
                                name="hello",
                                image=cluster.operator_image,
                                command=["python3", "-c", serve],
                                ports=[client.V1ContainerPort(container_port=8080)],
                                readiness_probe=client.V1Probe(
                                    tcp_socket=client.V1TCPSocketAction(port=8080), period_seconds=1
                                ),
                            )
                        ]
                    ),
                ),
            ),
        ),
    )

    def ready_pods() -> int:
        pods = core.list_namespaced_pod(namespace, label_selector="app=hello").items
        return sum(
            1
            for p in pods
            if p.status.phase == "Running"
            and all(c.ready for c in (p.status.container_statuses or []))
            and p.metadata.deletion_timestamp is None
        )

    wait_for("2 ready hello pods", lambda: ready_pods() == 2, timeout=120)
    apps.patch_namespaced_deployment_scale(namespace=namespace, name="hello", body={"spec": {"replicas": 3}})
    wait_for("3 ready hello pods", lambda: ready_pods() == 3, timeout=120)
    apps.patch_namespaced_deployment_scale(namespace=namespace, name="hello", body={"spec": {"replicas": 2}})
    wait_for(
        "back to 2 pods",
        lambda: (
            ready_pods() == 2
            and len([p for p in core.list_namespaced_pod(namespace, label_selector="app=hello").items]) == 2
        ),
        timeout=120,
    )

    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="hello"),
            spec=client.V1ServiceSpec(
                selector=labels, ports=[client.V1ServicePort(port=80, target_port=8080)]
            ),
        ),
    )
    url = f"http://hello.{namespace}.svc.cluster.local/"
    fetch = (
        "import urllib.request,time\n"
        "for i in range(60):\n"
        "  try:\n"
        f"    print(urllib.request.urlopen('{url}', timeout=2).read().decode()); break\n"
        "  except Exception as e:\n"
        "    print('retry', e); time.sleep(1)\n"
        "else: raise SystemExit(1)\n"
    )
    core.create_namespaced_pod(namespace, _python_pod("getter", cluster.operator_image, fetch))
    phase, logs = _pod_logs_when_done(core, namespace, "getter")
    hello_pods = {
        p.metadata.name for p in core.list_namespaced_pod(namespace, label_selector="app=hello").items
    }
    assert phase == "Succeeded", logs
    assert logs.strip().splitlines()[-1] in hello_pods, logs


def test_crd_cel_rule_rejects_bad_object_at_apply(cluster: Cluster, namespace: str) -> None:
    group = f"probe{uuid.uuid4().hex[:6]}.scalekeeper.dev"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"ranges.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "ranges", "singular": "range", "kind": "Range"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}},
                                    "x-kubernetes-validations": [
                                        {
                                            "rule": "self.min <= self.max",
                                            "message": "spec.min must be <= spec.max",
                                        }
                                    ],
                                }
                            },
                        }
                    },
                }
            ],
        },
    }
    ext = client.ApiextensionsV1Api(cluster.api)
    ext.create_custom_resource_definition(crd)
    try:
        wait_for(
            "CRD established",
            lambda: any(
                c.type == "Established" and c.status == "True"
                for c in (ext.read_custom_resource_definition(f"ranges.{group}").status.conditions or [])
            ),
        )
        good = (
            f"apiVersion: {group}/v1\nkind: Range\n"
            f"metadata: {{name: good, namespace: {namespace}}}\nspec: {{min: 1, max: 2}}\n"
        )
        bad = good.replace("name: good", "name: bad").replace("min: 1", "min: 5")
        wait_for(
            "good object accepted",
            lambda: kubectl(cluster, "apply", "-f", "-", stdin=good, check=False).returncode == 0,
        )
        result = kubectl(cluster, "apply", "-f", "-", stdin=bad, check=False)
        assert result.returncode != 0
        assert "spec.min must be <= spec.max" in result.stderr
    finally:
        ext.delete_custom_resource_definition(f"ranges.{group}")


def test_hpa_with_behavior_reports_cpu_from_metrics_server(cluster: Cluster, namespace: str) -> None:
    apps, autoscaling = client.AppsV1Api(cluster.api), client.AutoscalingV2Api(cluster.api)
    burn = "import time\nwhile True:\n  t=time.time()\n  while time.time()-t<0.05: pass\n  time.sleep(0.05)\n"
    apps.create_namespaced_deployment(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "burner"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "burner"}},
                "template": {
                    "metadata": {"labels": {"app": "burner"}},
                    "spec": {
                        "containers": [
                            {
                                "name": "burner",
                                "image": cluster.operator_image,
                                "command": ["python3", "-c", burn],
                                "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m"}},
                            }
                        ]
                    },
                },
            },
        },
    )
    autoscaling.create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "burner"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "burner"},
                "minReplicas": 1,
                "maxReplicas": 2,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 500},
                        },
                    }
                ],
                "behavior": {
                    "scaleUp": {
                        "stabilizationWindowSeconds": 60,
                        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                    },
                    "scaleDown": {
                        "stabilizationWindowSeconds": 300,
                        "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}],
                    },
                },
            },
        },
    )

    def cpu_utilization() -> int | None:
        hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("burner", namespace)
        for metric in hpa.status.current_metrics or []:
            if (
                metric.resource
                and metric.resource.name == "cpu"
                and metric.resource.current.average_utilization
            ):
                return int(metric.resource.current.average_utilization)
        return None

    utilization = wait_for("the HPA to report CPU utilization", cpu_utilization, timeout=240, interval=3)
    hpa = autoscaling.read_namespaced_horizontal_pod_autoscaler("burner", namespace)
    # The pod burns about half a core against a 100m request: far above zero, and the behavior round-trips.
    assert utilization >= 100
    assert hpa.spec.behavior.scale_down.stabilization_window_seconds == 300
    assert hpa.spec.behavior.scale_up.policies[0].value == 50


def test_deleting_an_owner_garbage_collects_what_it_owns(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner"))
    )
    ref = client.V1OwnerReference(
        api_version="v1",
        kind="ConfigMap",
        name="owner",
        uid=owner.metadata.uid,
        controller=True,
        block_owner_deletion=True,
    )
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owned", owner_references=[ref]))
    )
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="bystander"))
    )
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    wait_deleted(
        "the owned ConfigMap to be garbage-collected",
        lambda: core.read_namespaced_config_map("owned", namespace),
    )
    assert core.read_namespaced_config_map("bystander", namespace).metadata.name == "bystander"


def test_service_account_without_a_rule_is_forbidden(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
    )
    token = core.create_namespaced_service_account_token(
        "nobody", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    ).status.token
    cfg = client.Configuration()
    cfg.host = cluster.api.configuration.host
    cfg.ssl_ca_cert = cluster.api.configuration.ssl_ca_cert
    cfg.api_key = {"authorization": f"Bearer {token}"}
    as_nobody = client.CoreV1Api(client.ApiClient(cfg))
    with pytest.raises(ApiException) as denied:
        as_nobody.list_namespaced_pod(namespace)
    assert denied.value.status == 403
    assert "forbidden" in denied.value.body.lower()
    # The same token works where a rule grants it, so the 403 is RBAC's and not a broken token.
    rbac = client.RbacAuthorizationV1Api(cluster.api)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "pod-reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "nobody", "namespace": namespace}],
        },
    )
    wait_for(
        "the role to take effect",
        lambda: as_nobody.list_namespaced_pod(namespace).items is not None,
        timeout=30,
    )


def test_prometheus_scrapes_a_series_a_pod_exports(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    marker = uuid.uuid4().hex[:10]
    exporter = (
        "import http.server\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "  def do_GET(self):\n"
        f"    b=b'# TYPE scalekeeper_probe gauge\\nscalekeeper_probe{{marker=\"{marker}\"}} 42\\n'\n"
        "    self.send_response(200); self.send_header('Content-Type','text/plain')\n"
        "    self.end_headers(); self.wfile.write(b)\n"
        "  def log_message(self, *a): pass\n"
        "http.server.HTTPServer(('',9100),H).serve_forever()\n"
    )
    pod = _python_pod("exporter", cluster.operator_image, exporter)
    pod.spec.restart_policy = "Always"
    pod.metadata.annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": "9100"}
    core.create_namespaced_pod(namespace, pod)

    def series() -> list[dict[str, object]] | None:
        query = urllib.request.quote(f'scalekeeper_probe{{marker="{marker}"}}')
        with urllib.request.urlopen(
            f"{cluster.prometheus_url}/api/v1/query?query={query}", timeout=5
        ) as resp:
            return json.load(resp)["data"]["result"] or None

    result = wait_for("Prometheus to scrape the probe series", series, timeout=120, interval=1)
    assert result[0]["value"][1] == "42"  # type: ignore[index]
    assert result[0]["metric"]["namespace"] == namespace  # type: ignore[index]


def test_redis_answers_from_a_pod(cluster: Cluster, namespace: str) -> None:
    core = client.CoreV1Api(cluster.api)
    key, value = f"probe-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    # Write from the host through the NodePort, read from inside the cluster through the Service's DNS name.
    import socket

    host, port = cluster.redis_url.removeprefix("redis://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"*3\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n${len(value)}\r\n{value}\r\n".encode())
        assert sock.recv(64).startswith(b"+OK")
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="redis-cli"),
        spec=client.V1PodSpec(
            restart_policy="Never",
            containers=[
                client.V1Container(
                    name="cli",
                    image=cluster.images["REDIS_IMAGE"],
                    command=["redis-cli", "-h", "redis.scalekeeper-system.svc.cluster.local", "GET", key],
                )
            ],
        ),
    )
    core.create_namespaced_pod(namespace, pod)
    phase, logs = _pod_logs_when_done(core, namespace, "redis-cli")
    assert phase == "Succeeded", logs
    assert logs.strip() == value


def test_cluster_ranges_cannot_leave_the_machine(cluster: Cluster) -> None:
    if not cluster.guard_interface:
        pytest.fail("cluster.env names no guarded interface: hack/cluster.sh did not install the rule")
    rules = subprocess.run(
        ["iptables", "-S", "DOCKER-USER"], capture_output=True, text=True, check=True
    ).stdout
    for cidr in ("10.96.0.0/16", "10.244.0.0/16"):
        assert f"-d {cidr} -o {cluster.guard_interface}" in rules and "-j DROP" in rules, rules


def test_images_come_from_the_local_registry(cluster: Cluster) -> None:
    with urllib.request.urlopen(f"http://{cluster.registry}/v2/_catalog", timeout=5) as resp:
        catalog = json.load(resp)["repositories"]
    assert "scalekeeper" in catalog
    for ref in (cluster.images["PROMETHEUS_IMAGE"], cluster.images["REDIS_IMAGE"]):
        assert ref.startswith(cluster.registry + "/")
        assert ref.removeprefix(cluster.registry + "/").rsplit(":", 1)[0] in catalog
