"""WattTimeProvider: marginal operating emissions (co2_moer) from WattTime's API v3.

`GET /login` with HTTP basic auth gives a bearer token (valid 30 minutes); `GET /v3/forecast?
region=R&signal_type=co2_moer` answers {"data": [{"point_time", "value"}, ...], "meta": {...,
"units": "lbs_co2_per_mwh"}}; the first point is now. 1 lb/MWh = 0.45359237 g/kWh. This is a
*marginal* rate, not an average one; readings say so in their source.
"""

from __future__ import annotations

import time
from datetime import datetime

import httpx
from pydantic import BaseModel, SecretStr

from proxy.carbon.base import CarbonIntensityProvider, CIReading
from proxy.httpclient import job_client

G_PER_KWH_PER_LB_PER_MWH = 0.45359237
TOKEN_LIFETIME_S = 25 * 60  # WattTime tokens last 30 minutes


class _Point(BaseModel):
    point_time: datetime
    value: float


class _Meta(BaseModel):
    units: str = "lbs_co2_per_mwh"


class _Forecast(BaseModel):
    data: list[_Point]
    meta: _Meta = _Meta()


class WattTimeProvider(CarbonIntensityProvider):
    """One region's current marginal intensity."""

    def __init__(self, region: str, username: str, password: SecretStr, *,
                 base_url: str = "https://api.watttime.org", timeout_s: float = 5.0) -> None:
        self.name = f"watttime:{region}:co2_moer-marginal"
        self._region = region
        self._auth = (username, password)
        self._base = base_url.rstrip("/")
        self._timeout_s = timeout_s
        self._token: str | None = None
        self._token_at = 0.0

    async def _login(self, client: httpx.AsyncClient) -> str:
        if self._token and time.monotonic() - self._token_at < TOKEN_LIFETIME_S:
            return self._token
        user, password = self._auth
        response = await client.get(self._base + "/login",
                                    auth=(user, password.get_secret_value()))
        response.raise_for_status()
        self._token = str(response.json()["token"])
        self._token_at = time.monotonic()
        return self._token

    async def current(self, now: datetime) -> CIReading:
        """The forecast's first point (logging in again once if the token expired)."""
        async with job_client(self._timeout_s) as client:
            for attempt in range(2):
                token = await self._login(client)
                response = await client.get(
                    self._base + "/v3/forecast", headers={"authorization": f"Bearer {token}"},
                    params={"region": self._region, "signal_type": "co2_moer",
                            "horizon_hours": 0})
                if response.status_code == 401 and attempt == 0:
                    self._token = None
                    continue
                response.raise_for_status()
                break
        forecast = _Forecast.model_validate_json(response.content)
        if not forecast.data:
            raise ValueError("WattTime forecast has no data points")
        point = forecast.data[0]
        factor = 1.0 if forecast.meta.units.startswith("g") else G_PER_KWH_PER_LB_PER_MWH
        return CIReading(point.value * factor, point.point_time, self.name)
