"""StaticProvider: one fixed intensity (a region's annual average, from settings)."""

from __future__ import annotations

from datetime import datetime

from proxy.carbon.base import CarbonIntensityProvider, CIReading

# Annual means of direct (operational) intensity, gCO2e/kWh, for 2023 from Electricity Maps'
# hourly exports (../shared/data/sprout/README.md, table of traces). Other zones: configure
# PROXY_CARBON_STATIC_G_PER_KWH or a live provider.
REGION_ANNUAL_G_PER_KWH = {
    "US-CAL-CISO": 193.46,
    "US-TEX-ERCO": 316.51,
    "GB": 136.01,
}


class StaticProvider(CarbonIntensityProvider):
    """Always the same value; labelled as static in every reading."""

    name = "static"

    def __init__(self, g_per_kwh: float, label: str = "static") -> None:
        self._g_per_kwh = g_per_kwh
        self.name = label

    async def current(self, now: datetime) -> CIReading:
        """The configured value."""
        return CIReading(self._g_per_kwh, now, self.name)
