"""SumMeter: one meter over several devices; joules add up, all parts must be available.

Used by a worker that prefills on one device and decodes on another, or runs its draft model
on an old GPU.

A partly metered machine would under-count, so if any part is unavailable the whole meter says
so (and names the part); the proxy then falls back to labelled estimates.
"""

from __future__ import annotations

from proxy.energy.base import Availability, EnergyMeter, EnergySample, MeterUnavailable


class SumMeter(EnergyMeter):
    """The sum of its parts' cumulative joules."""

    def __init__(self, parts: list[EnergyMeter]) -> None:
        if not parts:
            raise ValueError("a SumMeter needs at least one part")
        self.parts = parts
        self.name = "+".join(part.name for part in parts)

    def availability(self) -> Availability:
        """Available only when every part is."""
        missing = []
        for part in self.parts:
            availability = part.availability()
            if not availability.available:
                missing.append(f"{part.name}: {availability.reason}")
        if missing:
            return Availability(False, "; ".join(missing))
        return Availability(True, "sum of " + ", ".join(part.name for part in self.parts))

    async def read(self) -> EnergySample:
        """Sum of the parts' readings (raises MeterUnavailable if any part does)."""
        samples = [await part.read() for part in self.parts]
        if not samples:
            raise MeterUnavailable("no parts")
        return EnergySample(sum(s.energy_j for s in samples), max(s.at_s for s in samples))

    async def read_parts(self) -> list[tuple[str, float]]:
        """Each part's cumulative joules (for the worker's energy document)."""
        return [(part.name, (await part.read()).energy_j) for part in self.parts]

    async def aclose(self) -> None:
        """Close every part."""
        for part in self.parts:
            await part.aclose()
