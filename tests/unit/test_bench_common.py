"""bench.common, what the cluster benches share, without a cluster: env files, percentiles, the local
operator's environment and process, /proc figures, and the guard on the in-cluster operator's lease."""

from __future__ import annotations

import argparse
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import common as C
from bench import proc as P


def test_env_file_splits_at_the_first_equals_sign(tmp_path: Path) -> None:
    path = tmp_path / "cluster.env"
    path.write_text("KUBECONFIG=/k/config\nPROMETHEUS_URL=http://h:1/?a=b\n\nnot a pair\n")
    assert C.env_file(path) == {"KUBECONFIG": "/k/config", "PROMETHEUS_URL": "http://h:1/?a=b"}


def test_percentile_is_nearest_rank_and_nan_when_empty() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert C.percentile(values, 0.5) == 3.0
    assert C.percentile(values, 0.95) == 5.0
    assert C.percentile(values, 0.0) == 1.0
    assert math.isnan(C.percentile([], 0.5))


def test_operator_env_serves_the_namespaces_under_its_own_lease() -> None:
    env = C.operator_env(
        kubeconfig="/k",
        prometheus="http://p",
        namespaces="bench-1",
        lease="bench-bench-1",
        lease_namespace="scalekeeper-system",
        identity="bench",
        extra={"SCALEKEEPER_LOG_LEVEL": "WARNING"},
    )
    assert env["SCALEKEEPER_NAMESPACES"] == "bench-1"
    assert (env["SCALEKEEPER_LEASE_NAME"], env["SCALEKEEPER_LEASE_NAMESPACE"]) == (
        "bench-bench-1",
        "scalekeeper-system",
    )
    assert env["SCALEKEEPER_METRICS_PORT"] == "0" and env["SCALEKEEPER_HEALTH_PORT"] == "0"
    assert env["SCALEKEEPER_LOG_LEVEL"] == "WARNING" and env["POD_NAME"] == "bench"
    assert env["PATH"] == os.environ["PATH"]


def test_the_in_cluster_operators_lease_is_never_taken_nor_deleted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_kubectl(*args: object, **kwargs: object) -> None:
        raise AssertionError("kubectl must not run")

    monkeypatch.setattr(C, "run_kubectl", no_kubectl)
    with pytest.raises(ValueError):
        C.delete_lease("/k", "scalekeeper-system", "scalekeeper-leader")
    with pytest.raises(ValueError):
        C.operator_env(
            kubeconfig="/k",
            prometheus="http://p",
            namespaces="x",
            lease="scalekeeper-leader",
            lease_namespace="scalekeeper-system",
            identity="x",
        )


def test_delete_lease_asks_kubectl_for_the_groups_member_leases(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, ...]] = []

    def fake(kubeconfig: str, *args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append((kubeconfig, *args))
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(C, "run_kubectl", fake)
    C.delete_lease("/k", "default", "lease-soak-1")
    selector = "scalekeeper.dev/group=lease-soak-1"
    assert calls == [("/k", "-n", "default", "delete", "lease", "-l", selector)]


def test_an_operator_process_logs_to_its_file_and_stops(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "op.log"
    command = (sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)")
    proc = C.start_operator_process(dict(os.environ), log, command=command)
    deadline = time.monotonic() + 10
    while "up" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert P.cpu_seconds(proc.pid) >= 0
    assert P.status_mib(P.proc_status(proc.pid), "VmRSS") > 0
    C.stop_process(proc, timeout=5)
    assert proc.returncode is not None and log.read_text().strip() == "up"
    C.stop_process(proc, timeout=5)  # already stopped: nothing to do


def test_status_mib_is_nan_for_a_missing_field() -> None:
    assert P.status_mib({"VmRSS": "2048 kB"}, "VmRSS") == 2.0
    assert math.isnan(P.status_mib({}, "VmHWM"))


def test_wait_for_asks_again_after_a_listed_error_and_names_what_timed_out() -> None:
    answers: list[object] = [OSError("busy"), False, True]

    def check() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    C.wait_for("ready", check, timeout=5, every=0.01, retry_on=(OSError,))
    assert answers == []
    with pytest.raises(TimeoutError, match="never: not within 0 s"):
        C.wait_for("never", lambda: False, timeout=0)
    with pytest.raises(ValueError):  # not listed: raised at once
        C.wait_for("bad", lambda: int("x"), timeout=5, retry_on=(OSError,))


def test_delete_prefixed_deletes_only_the_runs_keys_in_batches() -> None:
    class FakeRedis:
        def __init__(self) -> None:
            self.keys = {f"run:{i}" for i in range(1200)} | {"other:1"}
            self.batches: list[int] = []

        def scan_iter(self, match: str, count: int) -> list[str]:
            return sorted(k for k in self.keys if k.startswith(match.rstrip("*")))

        def delete(self, *names: str) -> None:
            self.batches.append(len(names))
            self.keys -= set(names)

    r = FakeRedis()
    assert C.delete_prefixed(r, "run:") == 1200
    assert r.keys == {"other:1"} and r.batches == [500, 500, 200]


def test_reproduce_command_spells_out_every_option_set_and_paths_from_the_root() -> None:
    args = argparse.Namespace(
        days=20, png=C.ROOT / "out" / "x.png", demo_image=None, label="a b", quick=True, slow=False
    )
    assert C.reproduce_command("bench.quality", args) == (
        "PYTHONPATH=operator .venv/bin/python -m bench.quality --days 20 --png out/x.png --label 'a b' "
        "--quick"
    )


def test_sigterm_ends_the_run_like_ctrl_c_and_the_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), C.sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises before this ends
    assert signal.getsignal(signal.SIGTERM) == before


def test_the_machine_lines_name_the_cores() -> None:
    assert "CPUs (nproc)" in C.machine() and f"{os.cpu_count()} cores" in C.host_line()


def test_a_proc_stat_line_is_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    # pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime ...
    line = "42 (my (odd) cmd) S 1 42 42 0 -1 4194560 1234 0 5 0 300 100 0 0 20 0 7 0 99 0 0"
    stat = P.parse_proc_stat(line)
    assert stat.command == "my (odd) cmd"
    assert stat.minor_faults == 1234
    assert stat.cpu_seconds == 400 / P.CLOCK_TICKS and stat.system_seconds == 100 / P.CLOCK_TICKS
