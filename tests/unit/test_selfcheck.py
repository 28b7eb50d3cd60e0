"""`scalekeeper check` (the chart's `helm test`): each check's verdict on what an operator or API server
answers, and its command line's refusals."""

from __future__ import annotations

import urllib.error

import pytest
from kubernetes.client.rest import ApiException
from prometheus_client import generate_latest

from scalekeeper import selfcheck
from scalekeeper.cli import main
from scalekeeper.opmetrics import OperatorMetrics

URL = "http://sk-metrics.ns.svc:8080/metrics"


def test_an_operators_own_metrics_pass() -> None:
    served = generate_latest(OperatorMetrics().registry).decode()
    assert selfcheck.check_metrics(URL, lambda url: served).startswith(f"metrics: {URL} answers with")


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ("# TYPE other_total counter\nother_total 1\n", "without scalekeeper_serving, scalekeeper_policies"),
        ("<html>not found</html>\n", "not in the Prometheus text format"),
    ],
)
def test_another_server_on_the_port_fails(answer: str, said: str) -> None:
    with pytest.raises(selfcheck.CheckFailed, match=said):
        selfcheck.check_metrics(URL, lambda url: answer)


def test_no_answer_fails_naming_the_url() -> None:
    def refused(url: str) -> str:
        raise urllib.error.URLError("Connection refused")

    with pytest.raises(selfcheck.CheckFailed, match=f"{URL} did not answer"):
        selfcheck.check_metrics(URL, refused)


def test_policies_readable_or_refused_with_the_api_servers_answer() -> None:
    assert (
        selfcheck.check_policies("shop", lambda ns: 2)
        == "policies: 2 ScalingPolicies readable in namespace shop"
    )

    def forbidden(ns: str) -> int:
        raise ApiException(status=403, reason="Forbidden")

    with pytest.raises(selfcheck.CheckFailed, match=r"namespace shop was refused \(403 Forbidden\)"):
        selfcheck.check_policies("shop", forbidden)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["check"], "the following arguments are required: --metrics-url, --namespace"),
        (["check", "--metrics-url", "sk:8080", "--namespace", "x"], "must be an http:// or https:// URL"),
        (["check", "--bogus"], "the following arguments are required"),
    ],
)
def test_a_bad_argument_is_one_line_and_exit_2(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and said in err and err.count("\n") == 1, err
