"""TraceProvider: replays an Electricity Maps hourly CSV export with its year moved to now.

Row h of a one-year export is hour-of-year h; the provider serves, at any time, the row of the
same hour-of-year (so 2023's traces can stand for the current year), wrapping around the end.
`offset_hours` shifts the replay (e.g. to start a demo in a dirty winter week).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy.carbon.base import CarbonIntensityProvider, CIReading


class TraceProvider(CarbonIntensityProvider):
    """Hourly values from a CSV export (column "(direct)" or "(LCA)")."""

    def __init__(self, path: Path, column: str = "direct", offset_hours: float = 0.0) -> None:
        self._offset = timedelta(hours=offset_hours)
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        if not rows:
            raise ValueError(f"{path}: empty trace")
        wanted = [c for c in rows[0] if "Carbon Intensity" in c and f"({column})" in c]
        if not wanted:
            raise ValueError(f"{path}: no '({column})' carbon intensity column")
        self._values = [float(row[wanted[0]]) for row in rows]
        zone = rows[0].get("Zone Id") or path.stem
        self.name = f"trace:{zone}"

    def _value(self, at: datetime) -> float:
        at = at + self._offset
        year_start = datetime(at.year, 1, 1, tzinfo=UTC)
        hour = int((at.astimezone(UTC) - year_start).total_seconds() // 3600)
        return self._values[hour % len(self._values)]

    async def current(self, now: datetime) -> CIReading:
        """The value of the current hour-of-year."""
        return CIReading(self._value(now), now, self.name)

    async def history(self, start: datetime, end: datetime) -> list[CIReading]:
        """One reading per hour in [start, end)."""
        first = start.replace(minute=0, second=0, microsecond=0)
        if first < start:
            first += timedelta(hours=1)
        readings = []
        at = first
        while at < end:
            readings.append(CIReading(self._value(at), at, self.name))
            at += timedelta(hours=1)
        return readings
