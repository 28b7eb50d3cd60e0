"""Named scenarios with replica counts worked out by hand from the HPA rules."""

from __future__ import annotations

from typing import Any

from scalekeeper import model
from scalekeeper.decision import decide
from scalekeeper.engine.types import LimitedBy, TargetHistory
from scalekeeper.tiers.web import REQUEST_RATE, WEB
from scalekeeper.tiers.workers import IN_FLIGHT, WAITING, worker_target

SEED_BEHAVIOR = {
    "scaleUp": {
        "stabilizationWindowSeconds": 60,
        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
    },
    "scaleDown": {
        "stabilizationWindowSeconds": 300,
        "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}],
    },
}


def run(
    spec: model.ScalingPolicySpec, name: str, start: int, steps: list[tuple[int, dict[str, float]]]
) -> dict[int, tuple[int, LimitedBy]]:
    """Decide every 15 s; the target follows each decision at once."""
    current = start
    history: TargetHistory | None = None
    out: dict[int, tuple[int, LimitedBy]] = {}
    for t, metrics in steps:
        samples = {name: {k: (v, float(t)) for k, v in metrics.items()}}
        d = decide(spec, {name: current}, samples, {name: history}, float(t)).targets[name]
        current, history = d.desired, d.history
        out[t] = (current, d.limited_by)
    return out


def test_seed_rules_on_a_step_load() -> None:
    """Scale up 50%/60 s after a 60 s window, down 10%/60 s after a 300 s window.

    Load 40 req/s (4 replicas at 10 each) steps to 200 (20 replicas) at t=60 and back to 40
    at t=600. Worked out by hand:
    * t=60..90: the up window still holds the 4s recorded before the step -> stay at 4;
    * t=105: the window now only holds 20s -> +50% of 4 = 6; the next +50% needs the 60 s
      period since that event to pass (strictly): 9 at t=165, 14 at t=225, then 20 (<21) at 285;
    * t=600..870: the down window holds the 20s recorded until t=585 -> stay at 20;
    * t=885: -10% of 20 = 18, then every 60 s: 16, 14, 12, 10, 9, 8, 7, 6, 5, 4 (truncated).
    """
    spec = model.parse_spec(
        {
            "web": {
                "deployment": "web",
                "minReplicas": 1,
                "maxReplicas": 100,
                "requestRate": {"query": "sum(rate(http_requests_total[1m]))", "perReplica": 10},
                "behavior": SEED_BEHAVIOR,
            }
        }
    )

    def load(t: int) -> float:
        return 200.0 if 60 <= t < 600 else 40.0

    steps = [(t, {REQUEST_RATE: load(t)}) for t in range(0, 1561, 15)]
    out = run(spec, WEB, 4, steps)
    expected = {}
    for t in range(0, 1561, 15):
        if t < 105:
            expected[t] = 4
        elif t < 165:
            expected[t] = 6
        elif t < 225:
            expected[t] = 9
        elif t < 285:
            expected[t] = 14
        elif t < 885:
            expected[t] = 20
        elif t < 945:
            expected[t] = 18
        else:
            # One 10% step per full 60 s period after t=885.
            expected[t] = [16, 14, 12, 10, 9, 8, 7, 6, 5, 4][min((t - 945) // 60, 9)]
    assert {t: r for t, (r, _) in out.items()} == expected
    assert out[60][1] is LimitedBy.STABILIZATION
    assert out[105][1] is LimitedBy.SCALE_UP_POLICY
    assert out[120][1] is LimitedBy.SCALE_UP_POLICY
    assert out[285][1] is LimitedBy.NONE
    assert out[300][1] is LimitedBy.TOLERANCE
    assert out[600][1] is LimitedBy.STABILIZATION
    assert out[885][1] is LimitedBy.SCALE_DOWN_POLICY
    assert out[1545][1] is LimitedBy.TOLERANCE


def test_worker_activation_then_cooldown_to_zero() -> None:
    """A queue with min 0, activation 5, cooldown 120 s and the HPA default behavior.

    * t=0: 3 tasks < activation 5 -> stay at 0;
    * t=15: 50 tasks -> 5 wanted, +4 pods allowed from 0 -> 4; t=30: 5;
    * t=45: backlog empty; within the 120 s cooldown the raw recommendation is 1, and the
      300 s down window still holds the 5 recorded at t=30 -> stay at 5 until t=330 -> 1;
    * from t=165 (120 s idle) the raw recommendation is 0, but the down window holds the 1
      recorded at t=150 until t=450 -> 0.
    """
    worker: dict[str, Any] = {
        "queue": "video",
        "deployment": "worker-video",
        "minReplicas": 0,
        "maxReplicas": 20,
        "tasksPerWorker": 10,
        "activationTasks": 5,
        "cooldownSeconds": 120,
    }
    spec = model.parse_spec({"workers": [worker]})

    def waiting(t: int) -> float:
        return 3.0 if t == 0 else 50.0 if t < 45 else 0.0

    steps = [(t, {WAITING: waiting(t), IN_FLIGHT: 0.0}) for t in range(0, 481, 15)]
    out = run(spec, worker_target("video"), 0, steps)
    expected = {t: 0 if t == 0 else 4 if t == 15 else 5 if t < 330 else 1 if t < 450 else 0 for t, _ in steps}
    assert {t: r for t, (r, _) in out.items()} == expected
    assert out[0][1] is LimitedBy.ACTIVATION
    assert out[15][1] is LimitedBy.SCALE_UP_POLICY
    assert out[45][1] is LimitedBy.STABILIZATION
