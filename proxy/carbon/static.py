"""StaticProvider: one fixed intensity (a region's annual average, from settings)."""

from __future__ import annotations

from datetime import datetime

from proxy.carbon.base import CarbonIntensityProvider, CIReading


class StaticProvider(CarbonIntensityProvider):
    """Always the same value; labelled as static in every reading."""

    name = "static"

    def __init__(self, g_per_kwh: float) -> None:
        self._g_per_kwh = g_per_kwh

    async def current(self, now: datetime) -> CIReading:
        """The configured value."""
        return CIReading(self._g_per_kwh, now, self.name)
