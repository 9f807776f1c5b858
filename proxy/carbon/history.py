"""Grid-intensity history of our own: the leader records each region's reading every interval.

Live providers (Electricity Maps, WattTime, GB) answer only "now", so without a record of our
own nothing could tell a clean hour from a dirty one. `CIRecorder` runs with every carbon
refresh: all replicas refresh their cached readings, and the jobs leader appends one row per
region to `ci_readings`. `CIHistory` is what the optimiser's trailing statistics, the
evaluator's clean-hour rule, the admin API and the dashboard read: those rows, plus whatever
past the provider itself knows (a replayed trace), never anything after `now`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, insert, select

from proxy.accounting.tables import ci_readings
from proxy.carbon.base import CarbonIntensityProvider, CIReading
from proxy.carbon.service import CarbonService
from proxy.jobs.leader import LeaderLock

DEFAULT_REGION = ""  # the proxy's own zone (pools without a `region`)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class CIRecorder:
    """`run_once`: refresh the cached readings; on the leader, record them."""

    def __init__(self, engine: Engine, carbon: CarbonService, leader: LeaderLock,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._carbon = carbon
        self._leader = leader
        self._clock = clock

    async def run_once(self) -> str:
        """One refresh, and one recorded reading per region (leader)."""
        await self._carbon.refresh()
        if not await asyncio.to_thread(self._leader.is_leader):
            return "refreshed"
        now = self._clock()
        rows = [{"region": region or DEFAULT_REGION, "read_at": now,
                 "g_per_kwh": reading.g_per_kwh, "source": reading.source[:64]}
                for region, reading in self._carbon.readings().items()
                if reading.source != "unavailable"]
        if rows:
            await asyncio.to_thread(self._store, rows)
        return f"recorded {len(rows)} regions"

    def _store(self, rows: list[dict[str, object]]) -> None:
        with self._engine.begin() as connection:
            connection.execute(insert(ci_readings), rows)


class CIHistory:
    """Recorded readings for a region (and the provider's own past, if it has one)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def recorded(self, region: str | None, start: datetime, end: datetime) -> list[CIReading]:
        """Blocking: rows with start <= read_at <= end, oldest first."""
        query = (select(ci_readings.c.read_at, ci_readings.c.g_per_kwh, ci_readings.c.source)
                 .where(ci_readings.c.region == (region or DEFAULT_REGION),
                        ci_readings.c.read_at >= start, ci_readings.c.read_at <= end)
                 .order_by(ci_readings.c.read_at))
        with self._engine.connect() as connection:
            return [CIReading(value, _aware(at), source)
                    for at, value, source in connection.execute(query)]

    async def readings(self, region: str | None, provider: CarbonIntensityProvider | None,
                       start: datetime, end: datetime) -> list[CIReading]:
        """The one history: recorded rows merged with the provider's own, oldest first."""
        recorded = await asyncio.to_thread(self.recorded, region, start, end)
        own = await provider.history(start, end) if provider is not None else []
        merged = sorted([*own, *recorded], key=lambda reading: reading.at)
        return [reading for reading in merged if start <= reading.at <= end]


def hourly_values(readings: list[CIReading], now: datetime, current: CIReading,
                  hours: int = 2) -> tuple[float, ...]:
    """CI at now - hours h, ..., now - 1 h, and now.

    Each hour takes the nearest reading within half an hour of it, else the next older value
    (the current one if there is none).
    """
    values: list[float] = []
    tolerance = timedelta(minutes=30)
    for back in range(hours, 0, -1):
        target = now - timedelta(hours=back)
        near = [r for r in readings if abs(r.at - target) <= tolerance]
        if near:
            values.append(min(near, key=lambda r: abs(r.at - target)).g_per_kwh)
        else:
            older = [r for r in readings if r.at <= target]
            values.append(older[-1].g_per_kwh if older else (values[-1] if values
                                                             else current.g_per_kwh))
    values.append(current.g_per_kwh)
    return tuple(values)
