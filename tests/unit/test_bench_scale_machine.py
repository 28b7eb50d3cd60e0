"""bench.scale.machine: the machine's CPU by program over a window."""

from __future__ import annotations

import pytest

from bench.scale.machine import MachineCpu, cores_by_program, program, sample


@pytest.mark.parametrize(
    ("comm", "cmdline", "pid", "name"),
    [
        ("kube-apiserver", ["kube-apiserver", "--etcd-servers=x"], 10, "kube-apiserver"),
        (
            "python3",
            ["python3", "-m", "bench.counted_operator", "counts.json"],
            10,
            "python -m bench.counted_operator",
        ),
        ("python3", ["python3", "-u", "-m", "scalekeeper"], 10, "python -m scalekeeper"),
        ("python3", ["python3", "-c", "print(1)"], 10, "python -c"),
        ("python3.11", ["/usr/bin/python3.11", "/app/exporter.py", "--port", "1"], 10, "python exporter.py"),
        ("python3", [], 10, "python3"),
        ("kworker/u8:1-events_unbound", [], 10, "kworker"),
        ("python3", ["python3", "-m", "bench.scale"], 1, "bench (this process)"),
    ],
)
def test_a_process_is_named_by_its_program(comm: str, cmdline: list[str], pid: int, name: str) -> None:
    assert program(comm, cmdline, own_pid=1, pid=pid) == name


def test_cores_are_the_growth_over_the_window_busiest_first_the_rest_as_other() -> None:
    a = MachineCpu(100.0, {"etcd": 5.0, "prometheus": 10.0, "kubelet": 1.0, "gone": 3.0})
    b = MachineCpu(116.0, {"etcd": 6.0, "prometheus": 16.0, "kubelet": 1.0, "new": 2.0})
    cores = cores_by_program(a, b, seconds=10.0, top=2)
    assert cores == {"all": 1.6, "prometheus": 0.6, "new": 0.2, "other": 0.8}
    assert list(cores) == ["all", "prometheus", "new", "other"]


def test_a_sample_of_this_machine_counts_this_process() -> None:
    first = sample()
    sum(i * i for i in range(300_000))  # some CPU of its own between the two
    second = sample()
    assert second.busy_seconds >= first.busy_seconds > 0
    assert second.by_program["bench (this process)"] > 0
