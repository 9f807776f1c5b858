"""ElectricityMapsProvider: `GET /v3/carbon-intensity/latest?zone=Z` with an `auth-token`.

Answer: {"zone", "carbonIntensity", "datetime", "updatedAt", "emissionFactorType",
"isEstimated", "estimationMethod"}; `emissionFactorType` chooses direct (operational) or
lifecycle intensity.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, SecretStr

from proxy.carbon.base import CarbonIntensityProvider, CIReading
from proxy.httpclient import job_client


class _Latest(BaseModel):
    zone: str
    carbonIntensity: float
    datetime: datetime
    isEstimated: bool | None = None


class ElectricityMapsProvider(CarbonIntensityProvider):
    """One zone's latest intensity."""

    def __init__(self, zone: str, token: SecretStr, *, factor: str = "direct",
                 base_url: str = "https://api.electricitymap.org/v3",
                 timeout_s: float = 5.0) -> None:
        self.name = f"electricitymaps:{zone}:{factor}"
        self._zone = zone
        self._token = token
        self._factor = factor
        self._url = base_url.rstrip("/") + "/carbon-intensity/latest"
        self._timeout_s = timeout_s

    async def current(self, now: datetime) -> CIReading:
        """The latest value (raises httpx or validation errors; the cache handles them)."""
        async with job_client(self._timeout_s) as client:
            response = await client.get(
                self._url, params={"zone": self._zone, "emissionFactorType": self._factor},
                headers={"auth-token": self._token.get_secret_value()})
            response.raise_for_status()
        latest = _Latest.model_validate_json(response.content)
        source = self.name + (":estimated" if latest.isEstimated else "")
        return CIReading(latest.carbonIntensity, latest.datetime, source)
