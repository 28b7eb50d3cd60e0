"""The opt-in seasonal forecast a metric of any tier may carry."""

from __future__ import annotations

from pydantic import ConfigDict, Field, StrictInt, model_validator

from .base import _Spec, cel
from .errors import cross_field_error

FORECAST_MAX_SEASON_SECONDS = 28 * 86400


class Forecast(_Spec):
    """Opt-in seasonal forecast: raise the floor ahead of a rise the metric showed a season ago."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            (
                "self.leadSeconds < self.seasonSeconds",
                "{path}.leadSeconds must be < {path}.seasonSeconds",
                ".leadSeconds",
            ),
        )
    )

    season_seconds: StrictInt = Field(
        ge=60,
        le=FORECAST_MAX_SEASON_SECONDS,
        description="How far back the same moment is: 86400 for the same time yesterday, 604800 for "
        "the same time last week. Prometheus must keep that much history.",
    )
    lead_seconds: StrictInt = Field(
        default=300,
        ge=1,
        le=86400,
        description="How far ahead to look (default 300): the floor rises to the highest value the "
        "metric had in the lead window a season ago, shaped by how the last lead window compares "
        "with the same window then (ratio clamped to [0.5, 2]). At least the pods' start time.",
    )

    @model_validator(mode="after")
    def _rules(self) -> Forecast:
        if self.lead_seconds >= self.season_seconds:
            raise cross_field_error(
                "leadSeconds",
                f"leadSeconds ({self.lead_seconds}) must be < seasonSeconds ({self.season_seconds})",
            )
        return self
