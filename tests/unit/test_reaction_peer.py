"""bench.reaction_peer's pure parts: the KEDA triggers and the policy it compares with, the Redis list
signal's moves (on a fake list), and the table of reactions from each origin."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bench.reaction_peer import autoscalers, report, signals
from bench.reaction_peer.steps import Step
from scalekeeper import model
from scalekeeper.tiers.workers import worker_queries


class FakeList:
    """The two list commands, as Redis does them: LPUSH at the head, RPOP from the tail."""

    def __init__(self, items: list[bytes]) -> None:
        self.items = list(items)

    def lpush(self, name: str, *values: bytes) -> int:
        for v in values:
            self.items.insert(0, v)
        return len(self.items)

    def rpop(self, name: str, count: int | None = None) -> list[bytes] | None:
        n = count or 1
        if not self.items:
            return None
        popped = self.items[-n:][::-1]
        del self.items[-n:]
        return popped


def test_replicas_for_is_ceil_of_value_over_ten_within_one_and_ten() -> None:
    assert [autoscalers.replicas_for(v) for v in (0, 1, 10, 11, 30, 70, 100, 250)] == [
        1,
        1,
        1,
        2,
        3,
        7,
        10,
        10,
    ]


def test_redis_trigger_reads_the_brokers_list_with_the_same_tasks_per_replica() -> None:
    trigger = autoscalers.redis_list_trigger(
        "redis://redis.scalekeeper-system.svc.cluster.local:6379/0", "ns:video"
    )
    assert trigger == {
        "type": "redis",
        "metricType": "AverageValue",
        "metadata": {
            "address": "redis.scalekeeper-system.svc.cluster.local:6379",
            "databaseIndex": "0",
            "listName": "ns:video",
            "listLength": "10",
        },
    }
    assert autoscalers.redis_list_trigger("redis://r:6380/3", "q")["metadata"]["address"] == "r:6380"
    assert autoscalers.redis_list_trigger("redis://r", "q")["metadata"]["databaseIndex"] == "0"
    with pytest.raises(ValueError):
        autoscalers.redis_list_trigger("rediss://r:6379/0", "q")


def test_scaled_object_fastest_adds_polling_and_behavior_defaults_do_not() -> None:
    trigger = autoscalers.redis_list_trigger("redis://r:6379/0", "q")
    defaults = autoscalers.scaled_object(trigger, fastest=False)["spec"]
    fastest = autoscalers.scaled_object(trigger, fastest=True)["spec"]
    assert defaults["triggers"] == fastest["triggers"] == [trigger]
    assert (defaults["minReplicaCount"], defaults["maxReplicaCount"]) == (1, 10)
    assert "pollingInterval" not in defaults and "advanced" not in defaults
    assert fastest["pollingInterval"] == 1
    behavior = fastest["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 0


def test_worker_policy_is_valid_and_reads_only_its_namespace() -> None:
    doc = autoscalers.worker_policy("rlist-abc", "video")
    spec = model.ScalingPolicySpec.model_validate(doc["spec"])
    worker = (spec.workers or [])[0]
    assert (worker.deployment, worker.min_replicas, worker.max_replicas) == ("target", 1, 10)
    assert worker.tasks_per_worker == 10
    queries = worker_queries(worker, doc["metadata"]["name"])
    assert queries.waiting == 'celery_queue_waiting_tasks{namespace="rlist-abc",queue="video"}'
    assert queries.in_flight == 'celery_queue_inflight_tasks{namespace="rlist-abc",queue="video"}'
    assert spec.interval_seconds == 1
    assert worker.behavior.tolerance == 0.0


def test_redis_list_signal_moves_real_messages_in_one_command_each_way() -> None:
    pool = [f"m{i}".encode() for i in range(100)]
    redis = FakeList(pool)
    signal = signals.RedisListSignal(redis, "ns:video", "http://prom", "q", length=100)
    signal.write(30)
    assert len(redis.items) == 30 and len(signal.spare) == 70
    signal.write(70)
    assert len(redis.items) == 70 and len(signal.spare) == 30
    # every message is in the list or spare, never both, never twice
    assert sorted(redis.items + signal.spare) == sorted(pool)
    signal.write(100)
    assert sorted(redis.items) == sorted(pool) and signal.spare == []
    with pytest.raises(ValueError):
        signal.write(101)
    signal.write(0)
    assert redis.items == [] and signal.length == 0


def test_redis_list_signal_fails_when_the_list_was_emptied_behind_its_back() -> None:
    redis = FakeList([b"a", b"b"])
    signal = signals.RedisListSignal(redis, "k", "http://prom", "q", length=5)
    with pytest.raises(RuntimeError):
        signal.write(1)


def step(phase: str, written: float, queryable: float, **seen: float | None) -> Any:
    return Step(
        phase,
        70,
        7,
        written,
        queryable,
        {autoscalers.SK if k == "sk" else autoscalers.KEDA: v for k, v in seen.items()},
    )


def test_reaction_is_measured_from_either_origin() -> None:
    s = step("fastest", 100.0, 101.0, sk=101.5, keda=110.0)
    assert s.reaction(autoscalers.SK, "written") == pytest.approx(1.5)
    assert s.reaction(autoscalers.SK, "queryable") == pytest.approx(0.5)
    assert s.reaction(autoscalers.KEDA, "written") == pytest.approx(10.0)
    assert step("fastest", 0.0, 1.0, keda=None).reaction(autoscalers.KEDA, "written") is None


def test_table_gives_each_scalekeeper_row_the_ratio_of_kedas_p95() -> None:
    steps = [step("fastest", 0.0, 1.0, sk=1.0 + 0.1 * i, keda=2.0 * (i + 1)) for i in range(10)]
    # one step moved KEDA only (scalekeeper was already there): it counts for KEDA alone
    steps.append(step("fastest", 0.0, 1.0, keda=30.0))
    stats = {st.row.label: st for st in report.table(steps, report.ROWS["redis-list"], 60.0)}
    sk_written, sk_queryable = stats["scalekeeper, from write"], stats["scalekeeper, from queryable"]
    keda = stats["KEDA, from write"]
    assert (sk_written.n, sk_queryable.n, keda.n) == (10, 10, 11)
    assert sk_written.p95 == pytest.approx(1.9) and sk_queryable.p95 == pytest.approx(0.9)
    assert keda.p95 == 30.0 and keda.max == 30.0 and keda.ratio is None
    assert sk_written.ratio == pytest.approx(30.0 / 1.9)
    assert sk_queryable.ratio == pytest.approx(30.0 / 0.9)


def test_table_counts_a_timeout_as_the_timeout() -> None:
    steps = [step("fastest", 0.0, 0.0, sk=0.5, keda=None), step("fastest", 0.0, 0.0, sk=0.5, keda=5.0)]
    stats = report.table(steps, report.ROWS["prometheus"], 60.0)
    keda = next(st for st in stats if st.row.target == autoscalers.KEDA)
    assert keda.timed_out == 1 and keda.max == 60.0
    assert report.table([], report.ROWS["prometheus"], 60.0) == []


class InstantSide:
    """A signal and a watcher in one: the KEDA target follows every value at once; the scalekeeper web
    target only rises by itself (its falls are the HPA's, which this fake never does)."""

    def __init__(self) -> None:
        self.current = {autoscalers.SK: 3, autoscalers.KEDA: 3}
        self.lowered: list[tuple[str, int]] = []
        self.clock = 100.0

    def write(self, value: int) -> float:
        self.clock += 1
        replicas = autoscalers.replicas_for(value)
        self.current[autoscalers.KEDA] = replicas
        self.current[autoscalers.SK] = max(self.current[autoscalers.SK], replicas)
        return self.clock

    def queryable(self, value: int) -> float:
        return self.clock + 0.5

    def forget(self, name: str, replicas: int) -> None:
        pass

    def wait(self, name: str, replicas: int, deadline: float) -> float | None:
        return self.clock + 1 if self.current[name] == replicas else None

    def lower(self, name: str, replicas: int) -> None:
        self.lowered.append((name, replicas))
        self.current[name] = replicas


def test_a_rises_only_target_is_timed_on_rises_and_put_back_after_each_fall(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench.reaction_peer import steps

    monkeypatch.setattr(steps.time, "sleep", lambda seconds: None)  # the random gaps between steps
    side = InstantSide()
    bench = steps.Bench(
        "kubeconfig",
        side,
        side,  # type: ignore[arg-type]
        random.Random(1),
        0.0,
        float("inf"),
        rises_only=(autoscalers.SK,),
        lower=side.lower,
    )
    bench.settle(30, 1)
    bench.run("fastest", [70, 30, 70, 30], 60)
    assert [sorted(s.seen) for s in bench.steps] == [
        [autoscalers.SK, autoscalers.KEDA],
        [autoscalers.KEDA],
    ] * 2
    assert [s.rise for s in bench.steps] == [True, False, True, False]
    assert side.lowered == [(autoscalers.SK, 3), (autoscalers.SK, 3)]
    stats = report.results(bench, "web", {"fastest": 60, "defaults-up": 60, "defaults-down": 60})["fastest"]
    assert [(st.row.label, st.n) for st in stats] == [("scalekeeper web tier", 2), ("KEDA", 2)]
