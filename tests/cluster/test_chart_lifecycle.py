"""The Helm chart against the real API server: server-side dry run of its output, then install, upgrade and
uninstall of a release that watches one namespace (so it sizes nothing of the other tests)."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from kubernetes import client

from .conftest import ROOT, Cluster, kubectl, tool_env
from .operator_fixture import install_crd
from .waiting import wait_for

pytestmark = pytest.mark.cluster
CHART = ROOT / "manifests" / "chart" / "scalekeeper"


def helm(cluster: Cluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["helm", *args, "--kubeconfig", cluster.kubeconfig],
        capture_output=True,
        text=True,
        check=False,
        env=tool_env(),
    )
    if check and result.returncode != 0:
        namespace = args[args.index("--namespace") + 1] if "--namespace" in args else "default"
        pods = kubectl(cluster, "-n", namespace, "get", "pods,events", "-o", "wide", check=False).stdout
        raise AssertionError(f"helm {' '.join(args[:2])} failed: {result.stderr}\n{pods[-3000:]}")
    return result


def test_rendered_chart_passes_a_server_side_dry_run(cluster: Cluster, namespace: str) -> None:
    # Rendered for the cluster it is applied to: `helm template` talks to no server, and a helm built without
    # the Kubernetes version stamps would assume v1.20, below the chart's kubeVersion.
    server_version = client.VersionApi(cluster.api).get_code().git_version
    rendered = helm(
        cluster,
        "template",
        "dry",
        str(CHART),
        "--kube-version",
        server_version,
        "--namespace",
        namespace,
        "--set",
        f"watchNamespaces={{{namespace}}}",
        "--set",
        "replicas=2",
    ).stdout
    result = kubectl(
        cluster, "apply", "--dry-run=server", "-n", namespace, "-f", "-", stdin=rendered, check=False
    )
    assert result.returncode == 0, result.stderr
    for kind in (
        "deployment.apps/",
        "serviceaccount/",
        "role.rbac.authorization.k8s.io/",
        "poddisruptionbudget",
    ):
        assert kind in result.stdout, result.stdout


def test_install_upgrade_uninstall_leaves_only_the_crd(cluster: Cluster, namespace: str) -> None:
    install_crd(cluster)
    release = f"sk-{uuid.uuid4().hex[:6]}"
    repo, _, tag = cluster.operator_image.rpartition(":")
    common = [
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        "300s",
        "--set",
        f"image.repository={repo}",
        "--set",
        f"image.tag={tag}",
        # The image under test was just pushed under a reused tag.
        "--set",
        "image.pullPolicy=Always",
        "--set",
        f"watchNamespaces={{{namespace}}}",
        "--set",
        f"leaderElection.leaseName={release}",
    ]
    helm(cluster, "install", release, str(CHART), *common)
    apps = client.AppsV1Api(cluster.api)
    deployments = apps.list_namespaced_deployment(
        namespace, label_selector=f"app.kubernetes.io/instance={release}"
    ).items
    assert len(deployments) == 1 and deployments[0].status.ready_replicas == 1
    pod_spec = deployments[0].spec.template.spec
    container = pod_spec.containers[0].security_context
    assert container.read_only_root_filesystem and not container.allow_privilege_escalation
    assert container.capabilities.drop == ["ALL"]
    _the_running_operator_is_confined(cluster, namespace, deployments[0])

    helm(cluster, "upgrade", release, str(CHART), *common, "--set", "logLevel=DEBUG")
    env = {
        e.name: e.value
        for e in apps.read_namespaced_deployment(deployments[0].metadata.name, namespace)
        .spec.template.spec.containers[0]
        .env
        if e.value is not None
    }
    assert env["SCALEKEEPER_LOG_LEVEL"] == "DEBUG"

    helm(cluster, "uninstall", release, "--namespace", namespace, "--wait")

    def nothing_left() -> bool:
        selector = f"app.kubernetes.io/instance={release}"
        rbac = client.RbacAuthorizationV1Api(cluster.api)
        left = (
            apps.list_namespaced_deployment(namespace, label_selector=selector).items
            + client.CoreV1Api(cluster.api)
            .list_namespaced_service_account(namespace, label_selector=selector)
            .items
            + client.CoreV1Api(cluster.api).list_namespaced_service(namespace, label_selector=selector).items
            + rbac.list_namespaced_role(namespace, label_selector=selector).items
            + rbac.list_namespaced_role_binding(namespace, label_selector=selector).items
            + rbac.list_cluster_role(label_selector=selector).items
        )
        return not left

    wait_for("every object of the release to be gone", nothing_left, timeout=60)
    # Helm never deletes what it installed from crds/: the CRD, and so every ScalingPolicy, stays.
    client.ApiextensionsV1Api(cluster.api).read_custom_resource_definition("scalingpolicies.scalekeeper.dev")


def _the_running_operator_is_confined(cluster: Cluster, namespace: str, dep: client.V1Deployment) -> None:
    """What the release's pod may do, asked of the pod itself and of the API server's authorizer."""
    pod = f"deploy/{dep.metadata.name}"
    probe = (
        "import os\n"
        "try:\n"
        "    open('/probe', 'w')\n"
        "    print(os.getuid(), 'writable')\n"
        "except OSError as exc:\n"
        "    print(os.getuid(), exc.errno)\n"
    )
    out = kubectl(cluster, "-n", namespace, "exec", pod, "--", "python3", "-c", probe).stdout.split()
    assert out[0] != "0", f"the operator runs as root: {out}"
    assert out[1] == "30", f"the root filesystem is writable (EROFS=30 expected): {out}"

    sa = f"system:serviceaccount:{namespace}:{dep.spec.template.spec.service_account_name}"
    authz = client.AuthorizationV1Api(cluster.api)

    def allowed(verb: str, resource: str, ns: str | None, group: str = "", subresource: str = "") -> bool:
        review = authz.create_subject_access_review(
            {
                "spec": {
                    "user": sa,
                    "resourceAttributes": {
                        "verb": verb,
                        "resource": resource,
                        "namespace": ns,
                        "group": group,
                        "subresource": subresource,
                    },
                }
            }
        )
        return bool(review.status.allowed)

    # What it needs, in the namespace it serves...
    assert allowed("patch", "deployments", namespace, "apps", "scale")
    assert allowed("list", "scalingpolicies", namespace, "scalekeeper.dev")
    assert allowed("create", "horizontalpodautoscalers", namespace, "autoscaling")
    # ...nothing of a namespace it does not serve...
    for verb, resource, group, sub in (
        ("patch", "deployments", "apps", "scale"),
        ("list", "scalingpolicies", "scalekeeper.dev", ""),
        ("create", "horizontalpodautoscalers", "autoscaling", ""),
    ):
        assert not allowed(verb, resource, "default", group, sub), f"{verb} {resource} in default"
    # ...and no Secret anywhere (Prometheus credentials come as mounted files, not API reads).
    for verb in ("get", "list", "watch"):
        assert not allowed(verb, "secrets", namespace), f"{verb} secrets in {namespace}"
        assert not allowed(verb, "secrets", None), f"{verb} secrets cluster-wide"
