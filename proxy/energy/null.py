"""NullMeter: the meter of hardware we cannot measure (rows fall back to labelled estimates)."""

from __future__ import annotations

from proxy.energy.base import Availability, EnergyMeter, EnergySample, MeterUnavailable


class NullMeter(EnergyMeter):
    """Always unavailable, with the reason."""

    name = "null"

    def __init__(self, reason: str = "no energy meter configured") -> None:
        self._reason = reason

    def availability(self) -> Availability:
        """Never available."""
        return Availability(False, self._reason)

    async def read(self) -> EnergySample:
        """Always raises."""
        raise MeterUnavailable(self._reason)
