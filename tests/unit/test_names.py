"""Names and label values derived from users' names stay within Kubernetes' limits; those that fit are
left as they are, so an upgrade never renames an object the operator made."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from scalekeeper import model
from scalekeeper.kube.hpa import desired_hpa, hpa_name
from scalekeeper.kube.names import LABEL_VALUE_MAX, fitted, label_value
from scalekeeper.kube.owners import OwnerRef
from scalekeeper.kube.workers import desired_worker_deployment

LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS_SUBDOMAIN = re.compile(model.DNS_SUBDOMAIN_PATTERN)
subdomains = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,251}[a-z0-9])?\Z")
POD = {"spec": {"containers": [{"name": "worker", "image": "app"}]}}


@given(subdomains)
def test_a_label_value_is_the_name_when_it_fits_and_a_valid_value_always(name: str) -> None:
    value = label_value(name)
    assert len(value) <= LABEL_VALUE_MAX and LABEL_VALUE.match(value)
    assert (value == name) == (len(name) <= LABEL_VALUE_MAX)


def test_long_names_that_share_a_start_stay_apart() -> None:
    a, b = "x" * 80 + "a", "x" * 80 + "b"
    assert label_value(a) != label_value(b)
    assert fitted("short", 10) == "short"


@given(subdomains, st.text(min_size=1, max_size=model.MAX_QUEUE_LENGTH))
def test_what_a_policy_makes_is_named_and_labelled_within_the_limits(policy: str, queue: str) -> None:
    owner = OwnerRef("shop", policy, "uid")
    worker = model.WorkerSpec.model_validate(
        {"queue": queue, "template": POD, "maxReplicas": 1, "tasksPerWorker": 1}
    )
    made = desired_worker_deployment(worker, owner, 1)
    name = made["metadata"]["name"]
    assert len(name) <= model.GENERATED_NAME_MAX and DNS_SUBDOMAIN.match(name)
    web = model.WebSpec.model_validate({"deployment": "web", "maxReplicas": 2, "cpuUtilization": 50})
    hpa = desired_hpa(web, owner, 1)
    assert len(hpa["metadata"]["name"]) <= model.MAX_NAME_LENGTH
    for obj in (made, hpa):
        labels = {**obj["metadata"]["labels"], **obj["spec"].get("selector", {}).get("matchLabels", {})}
        assert all(len(v) <= LABEL_VALUE_MAX and LABEL_VALUE.match(v) for v in labels.values()), labels


def test_names_that_fit_today_do_not_change() -> None:
    assert hpa_name("shop") == "shop-web"
    worker = model.WorkerSpec.model_validate(
        {"queue": "Video_HQ", "template": POD, "maxReplicas": 1, "tasksPerWorker": 1}
    )
    assert worker.deployment_name("shop") == "shop-worker-video-hq"


def test_queues_whose_generated_deployments_fold_to_one_are_refused() -> None:
    spec = {
        "workers": [
            {"queue": q, "template": POD, "maxReplicas": 1, "tasksPerWorker": 1} for q in ("Video", "video")
        ]
    }
    try:
        model.parse_spec(spec)
    except model.SpecError as exc:
        assert exc.messages == [
            "spec.workers[1].queue: workers[1].queue 'video' must not name a Deployment another tier of the "
            "policy sizes: its generated Deployment <policy>-worker-video is also workers[0].queue's"
        ]
    else:
        raise AssertionError("accepted two queues that make one Deployment")
