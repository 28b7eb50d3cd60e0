"""The connection budget's cuts: computed at once, the same as taking one pod at a time."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from scalekeeper import model
from scalekeeper.decision import decide
from scalekeeper.engine.budget import level_cuts
from tests.valid_specs import AT_THE_BOUNDS


def one_pod_at_a_time(growth: list[int], units: int) -> list[int]:
    """The rule as first written: take a pod from the largest scale-up, among equals the last listed."""
    kept = list(growth)
    for _ in range(units):
        growing = [i for i, g in enumerate(kept) if g > 0]
        if not growing:
            break
        victim = max(reversed(growing), key=lambda i: kept[i])
        kept[victim] -= 1
    return kept


@given(st.lists(st.integers(0, 12), max_size=6), st.integers(0, 80))
def test_the_cuts_are_those_of_one_pod_at_a_time(growth: list[int], units: int) -> None:
    assert level_cuts(growth, units) == one_pod_at_a_time(growth, units)


def test_a_budget_at_int32_scale_is_decided_without_a_step_per_pod() -> None:
    # Workers at their int32 bounds, a load asking for all of it, a budget far below: one pod at a time
    # this would be two billion steps.
    fast = {"scaleUp": {"policies": [{"type": "Pods", "value": 2**31 - 1, "periodSeconds": 15}]}}
    workers = [{**AT_THE_BOUNDS["workers"][0], "minReplicas": 0, "tasksPerWorker": 1, "behavior": fast}]
    budget = {"maxConnections": 100, "workerPoolSize": 1}
    spec = model.parse_spec({**AT_THE_BOUNDS, "workers": workers, "connectionBudget": budget})
    samples = {"worker/video": {"waiting": 1e300, "in_flight": 0.0}}
    d = decide(spec, {"web": None, "worker/video": 0, "readReplicas": None}, samples, {}, 1_800_000_000.0)
    video = d.targets["worker/video"]
    assert video.desired == 100 and "connection budget" in video.reason, video
