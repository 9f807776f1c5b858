"""CarbonIntensityProvider: the seam every intensity source implements."""

from __future__ import annotations

import abc
import dataclasses
from datetime import datetime


@dataclasses.dataclass(frozen=True, slots=True)
class CIReading:
    """One intensity value, its time and where it came from."""

    g_per_kwh: float
    at: datetime
    source: str


class CarbonIntensityProvider(abc.ABC):
    """A source of grid carbon intensity (gCO2e per kWh)."""

    name: str

    @abc.abstractmethod
    async def current(self, now: datetime) -> CIReading:
        """The intensity now."""

    async def history(self, start: datetime, end: datetime) -> list[CIReading]:
        """Readings with start <= at < end that the source itself knows (none by default)."""
        return []
