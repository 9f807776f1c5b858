"""UKGridProvider: the GB National Energy System Operator's Carbon Intensity API (no key).

`GET /intensity` answers {"data": [{"from", "to", "intensity": {"forecast", "actual",
"index"}}]} for the current half hour; `actual` is null until it is known, so the reading
falls back to the forecast and says which it used.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from proxy.carbon.base import CarbonIntensityProvider, CIReading
from proxy.httpclient import job_client


class _Intensity(BaseModel):
    forecast: float | None = None
    actual: float | None = None


class _Period(BaseModel):
    from_: datetime = Field(alias="from")
    intensity: _Intensity


class _Answer(BaseModel):
    data: list[_Period]


class UKGridProvider(CarbonIntensityProvider):
    """GB national intensity, half-hourly."""

    name = "ukgrid:GB"

    def __init__(self, *, base_url: str = "https://api.carbonintensity.org.uk",
                 timeout_s: float = 5.0) -> None:
        self._url = base_url.rstrip("/") + "/intensity"
        self._timeout_s = timeout_s

    async def current(self, now: datetime) -> CIReading:
        """The current half hour: actual if published, else forecast."""
        async with job_client(self._timeout_s) as client:
            response = await client.get(self._url, headers={"accept": "application/json"})
            response.raise_for_status()
        answer = _Answer.model_validate_json(response.content)
        if not answer.data:
            raise ValueError("Carbon Intensity API returned no period")
        period = answer.data[0]
        if period.intensity.actual is not None:
            return CIReading(period.intensity.actual, period.from_, self.name + ":actual")
        if period.intensity.forecast is None:
            raise ValueError("Carbon Intensity API period has neither actual nor forecast")
        return CIReading(period.intensity.forecast, period.from_, self.name + ":forecast")
