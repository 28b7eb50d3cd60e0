"""The opt-in seasonal forecast: it only ever raises a recommendation, and never blocks one."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from scalekeeper import model
from scalekeeper.decision import decide
from scalekeeper.engine.forecast import (
    FORECAST_METRICS,
    RATIO_BOUNDS,
    ForecastInput,
    forecast_value,
    raise_to_forecast,
)
from scalekeeper.engine.sizing import Reading
from scalekeeper.engine.types import LimitedBy, Proposal
from scalekeeper.metrics.promql import forecast_windows
from scalekeeper.simulate import SeriesHistory
from scalekeeper.tiers.workers import IN_FLIGHT, WAITING, worker_target

values = st.one_of(st.none(), st.floats(min_value=0, max_value=1e6, allow_nan=False))


def reading(value: float | None) -> Reading:
    return Reading("m", value, None if value is not None else "m is absent")


forecasts = st.builds(
    ForecastInput, st.builds(reading, values), st.builds(reading, values), st.builds(reading, values)
)


@given(forecasts)
def test_the_forecast_is_last_seasons_peak_scaled_by_a_bounded_ratio(f: ForecastInput) -> None:
    value, reason = forecast_value(f)
    if f.peak.value is None:
        assert value is None and "no forecast" in reason
        return
    assert value is not None
    low, high = RATIO_BOUNDS
    assert f.peak.value * low - 1e-9 <= value <= f.peak.value * high + 1e-9
    if not f.then.value or f.recent.value is None:
        assert value == f.peak.value


@given(
    st.one_of(st.none(), st.integers(0, 50)),
    st.one_of(st.none(), forecasts),
    st.floats(min_value=0.1, max_value=100),
)
def test_a_forecast_raises_never_lowers_and_never_replaces_a_missing_answer(
    replicas: int | None, f: ForecastInput | None, per_replica: float
) -> None:
    proposal = Proposal(replicas, "reactive", LimitedBy.NONE, ("waiting absent",) if replicas is None else ())
    out = raise_to_forecast(proposal, f, per_replica)
    if replicas is None or f is None:
        assert out == proposal
        return
    assert out.replicas is not None and out.replicas >= replicas
    assert out.missing == proposal.missing  # a forecast never makes metrics missing
    value, _ = forecast_value(f)
    if value is None:
        assert out.replicas == replicas
    else:
        need = value / per_replica  # float noise is ignored relative to the need, as ceil_replicas does
        assert out.replicas == max(replicas, math.ceil(need - 1e-9 * max(1.0, need)))
        assert (out.limited_by is LimitedBy.FORECAST) == (out.replicas > replicas)


def spec(forecast: dict[str, int] | None) -> model.ScalingPolicySpec:
    worker: dict[str, object] = {
        "queue": "q",
        "deployment": "w",
        "minReplicas": 0,
        "maxReplicas": 20,
        "tasksPerWorker": 10,
        "behavior": {"scaleUp": {"stabilizationWindowSeconds": 0}},
    }
    if forecast is not None:
        worker["forecast"] = forecast
    return model.parse_spec({"workers": [worker]})


@given(
    st.integers(0, 20),
    st.floats(0, 500, allow_nan=False),
    st.tuples(values, values, values),
)
def test_a_policy_with_a_forecast_never_decides_fewer_than_without(
    current: int, waiting: float, readings: tuple[float | None, ...]
) -> None:
    name = worker_target("q")
    base = {WAITING: (waiting, 100.0), IN_FLIGHT: (0.0, 100.0)}
    plain = decide(spec(None), {name: current}, {name: base}, {}, 100.0).targets[name]
    samples = {name: {**base, **{m: (v, 100.0) for m, v in zip(FORECAST_METRICS, readings, strict=True)}}}
    ahead = decide(spec({"seasonSeconds": 600, "leadSeconds": 60}), {name: current}, samples, {}, 100.0)
    d = ahead.targets[name]
    assert d.desired >= plain.desired
    # an unusable forecast (less history than a season) never holds a target as missing data would
    assert d.limited_by is not LimitedBy.MISSING_METRIC


def test_a_forecast_starts_workers_from_zero_ahead_of_a_known_rise() -> None:
    name = worker_target("q")
    samples = {
        name: {
            WAITING: (0.0, 100.0),
            IN_FLIGHT: (0.0, 100.0),
            FORECAST_METRICS[0]: (45.0, 100.0),  # 45 tasks in the next minute a season ago
            FORECAST_METRICS[1]: (0.0, 100.0),
            FORECAST_METRICS[2]: (0.0, 100.0),
        }
    }
    d = decide(spec({"seasonSeconds": 600, "leadSeconds": 60}), {name: 0}, samples, {}, 100.0).targets[name]
    # the forecast asks for 5; the scale-up rate rules apply to it as to any recommendation (4 pods/15 s)
    assert d.raw == 5 and d.desired == 4 and d.limited_by is LimitedBy.SCALE_UP_POLICY, d
    assert "forecast 45" in d.reason and "raises it to 5" in d.reason


def test_the_forecast_queries_look_one_season_back() -> None:
    peak, then, recent = forecast_windows("rate(x[1m])", lead_seconds=600, season_seconds=604800)
    assert peak == "max_over_time(sum(rate(x[1m]))[600s:20s] offset 604200s)"
    assert then == "avg_over_time(sum(rate(x[1m]))[600s:20s] offset 604800s)"
    assert recent == "avg_over_time(sum(rate(x[1m]))[600s:20s])"


def test_the_simulators_history_answers_as_those_queries_would() -> None:
    h = SeriesHistory()
    for t in range(0, 200, 5):
        h.add(float(t), float(t))  # the value is its own time
    assert h.forecast(100.0, 150.0, 20.0) == (None, None, None)  # not a season of history yet
    peak, then, recent = h.forecast(195.0, 150.0, 20.0)
    assert peak == 65.0  # max over (45, 65]
    assert then == (30 + 35 + 40 + 45) / 4  # mean over (25, 45]
    assert recent == (180 + 185 + 190 + 195) / 4
