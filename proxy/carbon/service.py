"""CarbonService: the latest intensity per grid region, refreshed off the request path."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from proxy.carbon.base import CarbonIntensityProvider, CIReading
from proxy.carbon.static import REGION_ANNUAL_G_PER_KWH, StaticProvider

log = logging.getLogger(__name__)


class CarbonService:
    """`latest(region)` is a dict lookup; `refresh` (a scheduled job) does the I/O."""

    def __init__(self, default: CarbonIntensityProvider,
                 regional_factory: Callable[[str], CarbonIntensityProvider] | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._default = default
        self._factory = regional_factory
        self._regional: dict[str, CarbonIntensityProvider] = {}
        self._clock = clock
        self._latest: dict[str | None, CIReading] = {}

    def add_region(self, region: str) -> None:
        """Serve a pool's region (its own chain: live provider, regional table, default)."""
        if region in self._regional:
            return
        if self._factory is not None:
            self._regional[region] = self._factory(region)
        elif region in REGION_ANNUAL_G_PER_KWH:
            self._regional[region] = StaticProvider(
                REGION_ANNUAL_G_PER_KWH[region], f"static:{region}:2023-mean")

    async def refresh(self) -> None:
        """Read every provider; a failing one keeps its last good value."""
        now = self._clock()
        for key, provider in [(None, self._default), *self._regional.items()]:
            try:
                self._latest[key] = await provider.current(now)
            except Exception as exc:  # provider errors must never break accounting
                log.warning("carbon intensity for %s unavailable (%s); keeping the last value",
                            key or "default", exc)

    def readings(self) -> dict[str | None, CIReading]:
        """The latest reading per served region (None: the default zone)."""
        return dict(self._latest)

    def latest(self, region: str | None) -> CIReading:
        """The newest reading for a region (falling back to the default provider's)."""
        reading = self._latest.get(region) if region in self._regional else None
        if reading is None:
            reading = self._latest.get(None)
        if reading is None:  # before the first refresh: an explicit placeholder, labelled
            return CIReading(0.0, self._clock(), "unavailable")
        return reading
