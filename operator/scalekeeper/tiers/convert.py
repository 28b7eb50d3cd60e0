"""The engine's view of the spec's behavior: the model's HPA rules as the engine's own types."""

from __future__ import annotations

from .. import model
from ..engine.types import EffectiveBehavior, RateLimit, ScalingRules


def _rules(rules: model.HPAScalingRules) -> ScalingRules:
    return ScalingRules(
        stabilization_window_seconds=rules.stabilization_window_seconds,
        select_policy=rules.select_policy,
        policies=tuple(RateLimit(p.type, p.value, p.period_seconds) for p in rules.policies),
    )


def behavior_of(behavior: model.Behavior) -> EffectiveBehavior:
    """The engine's behavior of one target (every HPA default already resolved by the model). Targets that
    omit their behavior share the model's default instance, and so one engine behavior."""
    if behavior is model.default_behavior():
        return _OF_DEFAULT
    return _converted(behavior)


def _converted(behavior: model.Behavior) -> EffectiveBehavior:
    return EffectiveBehavior(
        scale_up=_rules(behavior.scale_up),
        scale_down=_rules(behavior.scale_down),
        tolerance=behavior.tolerance,
        scale_down_delay_seconds=(
            None if behavior.scale_down_delay_seconds is None else float(behavior.scale_down_delay_seconds)
        ),
        cooldown_seconds=None if behavior.cooldown_seconds is None else float(behavior.cooldown_seconds),
    )


_OF_DEFAULT = _converted(model.default_behavior())
