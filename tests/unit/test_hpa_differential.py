"""Differential test: scalekeeper's engine against an independent HPA re-implementation.

Both get the same web-only policy (random behavior, bounds, tolerance, target) and the same
sequence of (time, request rate, current replicas) and must agree on the replicas at every
step, and on the controller state they carry (recommendations and scale events, slot for
slot). The engine's state goes through to_dict/from_dict between steps, as it does through
the status.

Deliberate differences, each pinned by its own test below:
  * current == 0 with minReplicas > 0: the HPA reads it as "scaling disabled" and leaves it;
    scalekeeper owns the target and treats it as below min (scales to min).
  * float noise: the HPA works on milli-quantities; scalekeeper works on Prometheus floats
    and ignores a relative 1e-9 above an integer when rounding up (0.1+0.2 req/s at 0.1 per
    replica is 3 replicas, not 4). The random loads here are integers, where both are exact.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any

from scalekeeper import model
from scalekeeper.decision import decide
from scalekeeper.tiers.web import REQUEST_RATE, WEB
from tests.unit.hpa_reference import ReferenceHPA

SEQUENCES = 10_000


@dataclass
class Scenario:
    min_replicas: int
    max_replicas: int
    per_replica: float
    tolerance: float
    behavior: dict[str, Any]  # autoscaling/v2 shape, fully defaulted
    start: float
    initial: int
    # (dt, rate or None for a failed metric, external override of replicas or None)
    steps: list[tuple[float, int | None, int | None]]


def _random_rules(rng: random.Random, up: bool) -> dict[str, Any]:
    window = rng.choice([0, 0, 15, 30, 60, 120, 300, rng.randint(0, 900)])
    select = rng.choices(["Max", "Min", "Disabled"], weights=[6, 3, 1])[0]
    policies = []
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.5:
            policies.append({"type": "Pods", "value": rng.randint(1, 10)})
        else:
            top = 300 if up else 100
            policies.append({"type": "Percent", "value": rng.randint(1, top)})
        policies[-1]["periodSeconds"] = rng.choice([15, 30, 60, 60, 120, 300, rng.randint(1, 900)])
    return {"stabilizationWindowSeconds": window, "selectPolicy": select, "policies": policies}


def random_scenario(rng: random.Random) -> Scenario:
    min_replicas = rng.randint(1, 5)
    max_replicas = min_replicas + rng.randint(0, 40)
    per_replica = rng.randint(1, 100)
    # An integer step (mostly the 15 s HPA sync period) or a ragged one, so that both the
    # exact-boundary cases of the windows and the in-between ones occur.
    regular = rng.random() < 0.6
    rate = rng.randint(0, per_replica * (max_replicas + 5))
    steps: list[tuple[float, int | None, int | None]] = []
    for _ in range(rng.randint(5, 40)):
        if regular:
            dt = float(rng.choice([15, 15, 30, 60]))
        else:
            dt = rng.choice([1.0, 0.5, 7.25, float(rng.randint(1, 200))])
        roll = rng.random()
        if roll < 0.15:
            rate = rng.randint(0, per_replica * (max_replicas + 5))
        elif roll < 0.6:
            rate = max(0, int(rate * rng.uniform(0.5, 1.6)) + rng.randint(-per_replica, per_replica))
        value = None if rng.random() < 0.06 else rate
        override = rng.randint(1, max_replicas + 5) if rng.random() < 0.04 else None
        steps.append((dt, value, override))
    return Scenario(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        per_replica=per_replica,
        tolerance=rng.choice([0.0, 0.05, 0.1, 0.1, 0.2, 0.5]),
        behavior={"scaleUp": _random_rules(rng, True), "scaleDown": _random_rules(rng, False)},
        start=float(rng.randint(0, 10**6)),
        initial=rng.randint(1, max_replicas + 5),
        steps=steps,
    )


def web_spec(s: Scenario) -> model.ScalingPolicySpec:
    return model.parse_spec(
        {
            "web": {
                "deployment": "web",
                "minReplicas": s.min_replicas,
                "maxReplicas": s.max_replicas,
                "requestRate": {"query": "sum(rate(http_requests_total[1m]))", "perReplica": s.per_replica},
                "behavior": {**s.behavior, "tolerance": s.tolerance},
            }
        }
    )


def run_both(s: Scenario) -> None:
    spec = web_spec(s)
    ref = ReferenceHPA(s.min_replicas, s.max_replicas, s.per_replica, s.tolerance, s.behavior)
    now = s.start
    current = s.initial
    stored: dict[str, Any] | None = None
    for index, (dt, rate, override) in enumerate(s.steps):
        now += dt
        if override is not None:
            current = override
        samples = {} if rate is None else {WEB: {REQUEST_RATE: (float(rate), now)}}
        histories = {} if stored is None else {WEB: stored}
        decision = decide(spec, {WEB: current}, samples, histories, now).targets[WEB]
        expected = ref.reconcile(current, None if rate is None else float(rate), now)
        h = decision.history
        ours = (
            decision.desired,
            [[r.replicas, r.timestamp] for r in h.recommendations],
            [[e.change, e.timestamp, e.outdated] for e in h.scale_up_events],
            [[e.change, e.timestamp, e.outdated] for e in h.scale_down_events],
        )
        theirs = (expected, ref.recommendations, ref.scale_up_events, ref.scale_down_events)
        if ours != theirs:
            raise AssertionError(
                f"engine {ours} != HPA {theirs} at step {index} t={now} current={current} "
                f"rate={rate}; scenario={s}"
            )
        stored = decision.history.to_dict()
        current = decision.desired
    # What the operator stores must survive JSON unchanged.
    assert stored is None or json.loads(json.dumps(stored)) == stored


def test_engine_matches_reference_hpa_on_10000_random_sequences() -> None:
    # A seeded loop rather than hypothesis: the same 10,000 sequences every run, cheap to
    # generate, and a failure prints the whole scenario to replay.
    rng = random.Random(20240611)
    for _ in range(SEQUENCES):
        run_both(random_scenario(rng))


# ----------------------------------------------------------- named, deliberate differences


def _single(min_replicas: int, current: int, rate: float, per_replica: float) -> tuple[int, int]:
    behavior = {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 100, "periodSeconds": 15}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
        },
    }
    spec = web_spec(Scenario(min_replicas, 50, per_replica, 0.1, behavior, 0.0, current, []))
    ref = ReferenceHPA(min_replicas, 50, per_replica, 0.1, behavior)
    ours = decide(spec, {WEB: current}, {WEB: {REQUEST_RATE: (rate, 100.0)}}, {}, 100.0).targets[WEB]
    return ours.desired, ref.reconcile(current, rate, 100.0)


def test_difference_zero_replicas_with_positive_min() -> None:
    ours, hpa = _single(min_replicas=2, current=0, rate=500.0, per_replica=100.0)
    assert hpa == 0, "the HPA treats replicas=0 as autoscaling disabled"
    assert ours == 2, "scalekeeper raises a target at 0 to its min"


def test_difference_float_noise_when_rounding_up() -> None:
    rate = 0.1 + 0.2  # 0.30000000000000004, what a Prometheus sum can return
    ours, hpa = _single(min_replicas=1, current=1, rate=rate, per_replica=0.1)
    assert hpa == 4, "plain ceil of 3.0000000000000004"
    assert ours == 3, "scalekeeper ignores float noise above an integer"
