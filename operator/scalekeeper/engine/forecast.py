"""Seasonal forecast (opt-in per target): raise a recommendation ahead of a rise seen a season ago.

Three readings of the target's own metric, all from Prometheus (or the simulator's history):
  peak    the highest value in the lead window one season ago, i.e. over [now - season,
          now - season + lead]: what the next `lead` seconds looked like last time;
  then    the mean over the lead window just before that moment a season ago;
  recent  the mean over the last lead window.
forecast = peak x clamp(recent / then, 0.5, 2): last season's coming peak, scaled by how this
season compares so far. The forecast only ever raises a recommendation, never lowers it, and an
unusable forecast never blocks one: the reactive rules stand alone, as without a forecast.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .sizing import Reading, ceil_replicas
from .types import LimitedBy, Proposal

RATIO_BOUNDS = (0.5, 2.0)

# The forecast's three readings of a target's metric, under these metric names beside the target's own.
FORECAST_PEAK = "forecast_peak"
FORECAST_THEN = "forecast_then"
FORECAST_RECENT = "forecast_recent"
FORECAST_METRICS = (FORECAST_PEAK, FORECAST_THEN, FORECAST_RECENT)


@dataclass(frozen=True)
class ForecastInput:
    peak: Reading
    then: Reading
    recent: Reading


def forecast_value(f: ForecastInput) -> tuple[float | None, str]:
    """The forecast value and a reason that shows how it was made."""
    if f.peak.value is None:
        return None, f"no forecast ({f.peak.problem or 'no history a season ago'})"
    ratio = 1.0
    if f.then.value and f.recent.value is not None:
        low, high = RATIO_BOUNDS
        ratio = min(high, max(low, f.recent.value / f.then.value))
    value = f.peak.value * ratio
    return value, f"forecast {value:.4g} (peak {f.peak.value:.4g} a season ago x {ratio:.2f})"


def raise_to_forecast(proposal: Proposal, forecast: ForecastInput | None, per_replica: float) -> Proposal:
    """The proposal, raised to ceil(forecast / per_replica) when that is more."""
    if forecast is None or proposal.replicas is None:
        # No reactive answer (its metric is unusable): hold as without a forecast.
        return proposal
    value, text = forecast_value(forecast)
    if value is None:
        return replace(proposal, reason=f"{proposal.reason}; {text}")
    need = ceil_replicas(value / per_replica)
    metrics = {**proposal.metrics, "forecast": value}
    if need <= proposal.replicas:
        return replace(proposal, reason=f"{proposal.reason}; {text} needs {need}", metrics=metrics)
    return Proposal(
        need,
        f"{proposal.reason}; {text} raises it to {need}",
        LimitedBy.FORECAST,
        proposal.missing,
        metrics,
    )
