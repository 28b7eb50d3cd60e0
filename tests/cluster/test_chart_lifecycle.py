"""The Helm chart against the real API server: server-side dry run of its output, then install, upgrade and
uninstall of a release that watches one namespace (so it sizes nothing of the other tests)."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from .conftest import ROOT, Cluster, kubectl, tool_env
from .operator_fixture import install_crd, release_options
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
        # The test hook's pod is for `helm test`, after an install has made its ServiceAccount.
        "--skip-tests",
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
        "validatingadmissionpolicy.admissionregistration.k8s.io/",
        "validatingadmissionpolicybinding.admissionregistration.k8s.io/",
    ):
        assert kind in result.stdout, result.stdout


def published_chart(cluster: Cluster, tmp_path: Path) -> str:
    """The chart packaged and pushed to the cluster's registry as an OCI artifact, as a release would publish
    it; its oci:// reference (with --version and --plain-http, what `helm install` takes)."""
    registry = cluster.operator_image.split("/", 1)[0]
    package = helm(cluster, "package", str(CHART), "--destination", str(tmp_path)).stdout
    archive = package.strip().rsplit(": ", 1)[-1]
    pushed = helm(cluster, "push", archive, f"oci://{registry}/charts", "--plain-http")
    assert "Digest: sha256:" in pushed.stdout + pushed.stderr, pushed
    return f"oci://{registry}/charts/scalekeeper"


def test_install_upgrade_uninstall_leaves_only_the_crd(
    cluster: Cluster, namespace: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    install_crd(cluster)
    chart = published_chart(cluster, tmp_path)
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    release = f"sk-{uuid.uuid4().hex[:6]}"
    # The namespace fixture removes the release's namespaced objects whatever happens; the cluster-scoped
    # admission policy of a test that failed before its uninstall would stay.
    request.addfinalizer(lambda: _delete_admission_policies(cluster, release))
    common = [
        *release_options(cluster, namespace),
        "--set",
        f"watchNamespaces={{{namespace}}}",
        "--set",
        f"sharding.leaseName={release}",
    ]
    # From the registry, as a user installs it (the chart's own kubeVersion is checked against the server).
    helm(cluster, "install", release, chart, "--version", version, "--plain-http", *common)
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
    _its_pod_patches_are_limited_to_the_deletion_cost(cluster, namespace, deployments[0])
    # The chart's test hook: the operator answers on its metrics Service, its account may read policies.
    tested = helm(cluster, "test", release, "--namespace", namespace, "--timeout", "120s")
    assert re.search(r"Phase:\s+Succeeded", tested.stdout), tested.stdout

    helm(
        cluster,
        "upgrade",
        release,
        chart,
        "--version",
        version,
        "--plain-http",
        *common,
        "--set",
        "logLevel=DEBUG",
    )
    env = {
        e.name: e.value
        for e in apps.read_namespaced_deployment(deployments[0].metadata.name, namespace)
        .spec.template.spec.containers[0]
        .env
        if e.value is not None
    }
    assert env["SCALEKEEPER_LOG_LEVEL"] == "DEBUG"

    helm(cluster, "uninstall", release, "--namespace", namespace, "--wait")

    admission = client.AdmissionregistrationV1Api(cluster.api)

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
            + admission.list_validating_admission_policy(label_selector=selector).items
            + admission.list_validating_admission_policy_binding(label_selector=selector).items
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


def _delete_admission_policies(cluster: Cluster, release: str) -> None:
    admission = client.AdmissionregistrationV1Api(cluster.api)
    selector = f"app.kubernetes.io/instance={release}"
    for binding in admission.list_validating_admission_policy_binding(label_selector=selector).items:
        admission.delete_validating_admission_policy_binding(binding.metadata.name)
    for policy in admission.list_validating_admission_policy(label_selector=selector).items:
        admission.delete_validating_admission_policy(policy.metadata.name)


COST = "controller.kubernetes.io/pod-deletion-cost"


def _its_pod_patches_are_limited_to_the_deletion_cost(
    cluster: Cluster, namespace: str, dep: client.V1Deployment
) -> None:
    """The release's ValidatingAdmissionPolicy (templates/pod-deletion-cost-policy.yaml), asked of the API
    server as the operator's ServiceAccount (impersonated): the deletion-cost annotation may be set, changed
    and removed; anything else about a pod is refused with the rule's message; anyone else is not limited."""
    core = client.CoreV1Api(cluster.api)
    name = "busy-worker"
    # Never scheduled to run anything that matters: only its object is patched.
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": name, "labels": {"app": "worker"}, "annotations": {"team": "shop"}},
            "spec": {
                "containers": [
                    {"name": "worker", "image": cluster.operator_image, "command": ["sleep", "infinity"]}
                ],
                "terminationGracePeriodSeconds": 0,
            },
        },
    )
    as_operator = config.new_client_from_config(config_file=cluster.kubeconfig)
    sa = f"system:serviceaccount:{namespace}:{dep.spec.template.spec.service_account_name}"
    as_operator.set_default_header("Impersonate-User", sa)
    pods = client.CoreV1Api(as_operator)

    def refusal(body: Any, content_type: str = "application/merge-patch+json") -> str:
        """'' when the operator's patch is admitted, else the API server's message."""
        try:
            pods.patch_namespaced_pod(name, namespace, body, _content_type=content_type)
        except ApiException as exc:
            if exc.status != 422:  # an RBAC refusal (403) is not the policy's
                raise
            return str(json.loads(exc.body)["message"])
        return ""

    # The API server applies a new policy once its admission informer has it: until the first refusal.
    probe = itertools.count()
    wait_for(
        "the pod-deletion-cost policy to refuse the operator a label change",
        lambda: (
            "its labels must not change" in refusal({"metadata": {"labels": {"probe": str(next(probe))}}})
        ),
        timeout=30,
        interval=0.5,
    )

    def cost() -> str | None:
        annotations = core.read_namespaced_pod(name, namespace).metadata.annotations or {}
        return annotations.get(COST)

    for value in ("3", "0", None):  # set, change, remove
        assert refusal({"metadata": {"annotations": {COST: value}}}) == "", value
        assert cost() == value
    add = [{"op": "add", "path": "/metadata/annotations/" + COST.replace("/", "~1"), "value": "1"}]
    assert refusal(add, "application/json-patch+json") == ""
    assert cost() == "1"

    rule = f"the scalekeeper operator may change only the {COST} annotation of a pod"
    image = [{"op": "replace", "path": "/spec/containers/0/image", "value": "registry.invalid/evil:1"}]
    for body, content_type, what in (
        (image, "application/json-patch+json", "its spec"),
        ({"spec": {"activeDeadlineSeconds": 60}}, "application/merge-patch+json", "its spec"),
        ({"metadata": {"labels": {"app": None}}}, "application/merge-patch+json", "its labels"),
        ({"metadata": {"annotations": {"team": "billing"}}}, "application/merge-patch+json", ": team"),
        # The cost carries nothing along with it.
        ({"metadata": {"annotations": {COST: "2", "extra": "x"}}}, "application/merge-patch+json", ": extra"),
        (
            {"metadata": {"finalizers": ["example.com/hold"]}},
            "application/merge-patch+json",
            "its finalizers",
        ),
    ):
        message = refusal(body, content_type)
        assert rule in message and what in message, f"{body}: {message!r}"
    pod = core.read_namespaced_pod(name, namespace)
    assert pod.spec.containers[0].image == cluster.operator_image and pod.spec.active_deadline_seconds is None
    assert pod.metadata.labels["app"] == "worker" and not pod.metadata.finalizers
    assert pod.metadata.annotations["team"] == "shop" and pod.metadata.annotations[COST] == "1"
    # Only the operator is limited: the test's own user changes a label.
    core.patch_namespaced_pod(name, namespace, {"metadata": {"labels": {"app": "other"}}})
    as_operator.close()
