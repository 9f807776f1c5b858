"""Resilience around live providers: a cache of the last good value, and a fallback chain.

`CachedProvider` bounds every call by a timeout and, when the source fails, keeps serving its
last good value while it is younger than `max_staleness` (labelled ":cached"). `FallbackChain`
asks each provider in turn; it should end with a static provider, which never fails.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from proxy.carbon.base import CarbonIntensityProvider, CIReading

log = logging.getLogger(__name__)


class CachedProvider(CarbonIntensityProvider):
    """The wrapped provider, with a timeout and a stale-while-failing cache."""

    def __init__(self, provider: CarbonIntensityProvider, *, max_staleness: timedelta,
                 timeout_s: float) -> None:
        self.name = provider.name
        self._provider = provider
        self._max_staleness = max_staleness
        self._timeout_s = timeout_s
        self._last: CIReading | None = None
        self._fetched_at: datetime | None = None

    async def current(self, now: datetime) -> CIReading:
        """Fresh if possible, else the cached value while not too old, else raise."""
        try:
            reading = await asyncio.wait_for(self._provider.current(now), self._timeout_s)
        except Exception as exc:
            if (self._last is not None and self._fetched_at is not None
                    and now - self._fetched_at <= self._max_staleness):
                log.info("%s failed (%s); serving its cached value", self.name, exc)
                return CIReading(self._last.g_per_kwh, self._last.at, self._last.source + ":cached")
            raise
        self._last, self._fetched_at = reading, now
        return reading

    async def history(self, start: datetime, end: datetime) -> list[CIReading]:
        """The wrapped provider's history."""
        return await self._provider.history(start, end)


class FallbackChain(CarbonIntensityProvider):
    """The first provider that answers; the chain's last member should be static."""

    def __init__(self, providers: Sequence[CarbonIntensityProvider]) -> None:
        if not providers:
            raise ValueError("a fallback chain needs at least one provider")
        self._providers = list(providers)
        self.name = " > ".join(p.name for p in self._providers)

    async def current(self, now: datetime) -> CIReading:
        """Ask each in turn."""
        errors = []
        for provider in self._providers:
            try:
                return await provider.current(now)
            except Exception as exc:
                errors.append(f"{provider.name}: {exc}")
        raise RuntimeError("every intensity provider failed: " + "; ".join(errors))

    async def history(self, start: datetime, end: datetime) -> list[CIReading]:
        """History of the first provider that has any."""
        for provider in self._providers:
            readings = await provider.history(start, end)
            if readings:
                return readings
        return []
