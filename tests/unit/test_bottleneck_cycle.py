"""Bottleneck episodes through the cycle, on the fake API server and clock: the condition, the status, one
Warning Event per episode and a Normal one when it ends, across an operator restart."""

from __future__ import annotations

from typing import Any

from scalekeeper.memory import PolicyMemory
from scalekeeper.metrics.saturation import RESOURCE_METRICS
from tests.cycle_scenarios import condition, replicas_spec
from tests.unit.fake_cluster import FakeWorld

AT_MAX = "at maxReplicas 5 while its demand needs 8"


def told(w: FakeWorld) -> list[tuple[str, str, str]]:
    return [e for e in w.events if e[1].startswith("Bottleneck")]


def bottleneck(w: FakeWorld) -> dict[str, Any]:
    return condition(w.status("p"), "Bottleneck")


def capped(w: FakeWorld) -> None:
    """Read replicas capped at 5 while the load needs 8, from the first cycle on (every 5 s, the default
    interval: an episode starts after 30 s and ends after 60 s)."""
    w.target(1)
    w.policy("p", replicas_spec())
    w.load(80)
    for _ in range(6):  # the signal holds from the first cycle: 25 s
        w.cycle("p")
        assert bottleneck(w)["status"] == "False" and told(w) == []
    assert bottleneck(w)["reason"] == "NoBottleneck" and w.status("p")["bottleneck"] == "none"
    w.cycle("p")  # 30 s
    assert told(w) == [("Warning", "Bottleneck", f"readReplicas saturated for 30s: {AT_MAX}")]


def test_a_target_capped_too_low_is_one_episode_told_once_then_cleared() -> None:
    w = FakeWorld()
    capped(w)
    held = bottleneck(w)
    assert (held["status"], held["reason"], held["message"]) == (
        "True",
        "AtMaxReplicas",
        f"readReplicas: {AT_MAX}",
    )
    status = w.status("p")
    assert status["bottleneck"] == "readReplicas"
    assert status["bottlenecks"] == [
        {
            "name": "readReplicas",
            "reason": "AtMaxReplicas",
            "message": AT_MAX,
            "since": held["lastTransitionTime"],
        }
    ]
    for _ in range(20):
        w.cycle("p")
    assert len(told(w)) == 1 and bottleneck(w)["status"] == "True"

    w.load(30)  # 3 replicas' worth: clear from the next cycle
    for _ in range(12):  # 55 s clear: the episode goes on, the status still says so
        w.cycle("p")
        assert bottleneck(w)["status"] == "True" and len(told(w)) == 1
    w.cycle("p")  # 60 s
    assert told(w)[1:] == [("Normal", "BottleneckCleared", "readReplicas clear for 60s")]
    cleared = bottleneck(w)
    assert (cleared["status"], cleared["reason"]) == ("False", "NoBottleneck")
    assert w.status("p")["bottleneck"] == "none" and w.status("p")["bottlenecks"] == []


def test_saturation_chattering_inside_the_clear_window_is_still_one_episode() -> None:
    w = FakeWorld()
    capped(w)
    for _ in range(5):
        w.load(30)
        for _ in range(8):  # 40 s clear, less than the 60 s that end an episode
            w.cycle("p")
        w.load(80)
        w.cycle("p")
    assert len(told(w)) == 1 and bottleneck(w)["status"] == "True"


def test_a_restarted_operator_does_not_tell_an_episode_again_and_ends_it() -> None:
    w = FakeWorld()
    capped(w)
    w.memories["p"] = PolicyMemory()  # a new process: what it knows comes from the status
    for _ in range(10):
        w.cycle("p")
    assert len(told(w)) == 1 and bottleneck(w)["status"] == "True"
    w.memories["p"] = PolicyMemory()
    w.load(30)
    w.cycle("p")  # clear, after a restart: the status still tells the episode until it ends
    assert w.status("p")["bottlenecks"][0]["message"] == AT_MAX
    for _ in range(12):
        w.cycle("p")
    assert [e[1] for e in told(w)] == ["Bottleneck", "BottleneckCleared"]
    assert bottleneck(w)["status"] == "False"


def test_a_target_sized_by_an_older_policy_is_not_this_policys_bottleneck() -> None:
    w = FakeWorld()
    w.target(5)
    w.policy("older", replicas_spec())
    w.policy("p", replicas_spec())
    w.load(80)
    for _ in range(10):
        w.cycle("older")
        w.cycle("p", claimed_by=("older",))
    assert bottleneck(w)["status"] == "False"
    older = [e for e in w.events if e[1] == "Bottleneck"]
    assert len(older) == 1  # the older policy, which sizes it, tells it


def test_a_budget_holding_a_worker_back_and_connections_at_their_limit_are_two_episodes() -> None:
    w = FakeWorld()
    w.target(1)
    worker = {"queue": "video", "deployment": "db", "maxReplicas": 10, "tasksPerWorker": 10}
    budget = {"maxConnections": 50, "webPoolSize": 10, "workerPoolSize": 10, "reserved": 0}
    w.policy("p", {"workers": [{**worker, "protectBusyWorkers": False}], "connectionBudget": budget})
    w.load(80)  # 80 waiting, 80 in flight: 10 workers wanted, 5 fit in 50 connections
    for _ in range(11):
        w.cycle("p")
    held = bottleneck(w)
    assert (held["status"], held["reason"]) == ("True", "ConnectionBudget")
    assert held["message"] == (
        "worker/video: the connection budget holds its scale-up at 5 (it needs 10); "
        "connections: 50 connections planned of maxConnections 50 (100% > 90%)"
    )
    assert w.status("p")["bottleneck"] == "worker/video, connections"
    assert sorted(m.split(" saturated")[0] for _, r, m in told(w)) == ["connections", "worker/video"]


def test_cpu_and_memory_above_their_thresholds_are_a_bottleneck() -> None:
    w = FakeWorld()
    w.target(2)
    w.policy("p", replicas_spec())
    w.load(20)  # two replicas' worth: no replica signal
    w.prometheus.resources = 0.9  # CPU and memory at 90% of the containers' limits
    for _ in range(7):
        w.cycle("p")
    held = bottleneck(w)
    assert (held["status"], held["reason"]) == ("True", "CpuHigh")
    assert (
        held["message"]
        == "readReplicas: CPU at 90% of its limits (> 80%); memory at 90% of its limits (> 85%)"
    )


def test_without_cadvisor_series_cpu_and_memory_are_said_to_be_unevaluated_and_block_nothing() -> None:
    w = FakeWorld()
    w.target(1)
    w.policy("p", replicas_spec())
    w.load(35)
    w.cycle("p")
    assert w.replicas() == 4  # sized as ever
    assert condition(w.status("p"), "MetricsAvailable")["status"] == "True"
    assert bottleneck(w)["message"] == (
        "no target saturated for a while (CPU and memory not evaluated for readReplicas: no pods, or no "
        "cAdvisor series with limits)"
    )
    w.prometheus.resources = 0.1
    w.cycle("p")
    assert bottleneck(w)["message"] == "no target saturated for a while"


def test_a_target_without_pods_has_its_cpu_and_memory_left_unread() -> None:
    # Those queries are a cycle's heaviest in Prometheus and would answer nothing at zero replicas.
    w = FakeWorld()
    w.target(0)
    spec = replicas_spec()
    spec["readReplicas"]["minReplicas"] = 0
    w.policy("p", spec)
    w.load(0)
    asked: list[str] = []
    read = w.prometheus.read

    def recording(queries: Any) -> Any:
        asked.extend(key.metric for key in queries)
        return read(queries)

    w.prometheus.read = recording  # type: ignore[method-assign]
    w.cycle("p")
    assert asked and not set(asked) & set(RESOURCE_METRICS)
    assert "CPU and memory not evaluated for readReplicas: no pods" in bottleneck(w)["message"]
    w.target(2)
    w.cycle("p")
    assert set(RESOURCE_METRICS) <= set(asked)
