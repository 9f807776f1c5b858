"""Named fakes for meters: replayed counter readings and a device of constant power.

`ReplayNVML` stands in for the pynvml module (a process boundary: the NVIDIA driver);
`ConstantPowerMeter` simulates a device drawing fixed watts, for workers on machines without
counters in tests and demos; its readings say "fake" wherever they are reported.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from proxy.energy.base import Availability, EnergyMeter, EnergySample


class NVMLError(Exception):
    """What pynvml raises."""


class ReplayNVML:
    """The subset of pynvml the meter uses, replaying scripted readings per device."""

    NVMLError = NVMLError

    def __init__(self, energy_mj: list[list[float]] | None = None,
                 power_mw: list[list[float]] | None = None, fail_init: str | None = None):
        self._energy = [iter(values) for values in energy_mj or []]
        self._power = [iter(values) for values in power_mw or []]
        self._fail_init = fail_init
        count = max(len(self._energy), len(self._power))
        self._count = count

    def nvmlInit(self) -> None:
        """Initialise (or fail as scripted)."""
        if self._fail_init:
            raise NVMLError(self._fail_init)

    def nvmlDeviceGetCount(self) -> int:
        """Devices scripted."""
        return self._count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        """The index is the handle."""
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> float:
        """The next scripted counter value (mJ)."""
        if handle >= len(self._energy):
            raise NVMLError("Not Supported")
        return _next(self._energy[handle])

    def nvmlDeviceGetPowerUsage(self, handle: int) -> float:
        """The next scripted power value (mW)."""
        if handle >= len(self._power):
            raise NVMLError("Not Supported")
        return _next(self._power[handle])


def _next(values: Iterator[float]) -> float:
    try:
        return next(values)
    except StopIteration as exc:
        raise NVMLError("replay exhausted") from exc


class ConstantPowerMeter(EnergyMeter):
    """A simulated device drawing `power_w` all the time (joules = watts x elapsed)."""

    def __init__(self, power_w: float) -> None:
        self._power_w = power_w
        self._start_s = time.monotonic()
        self.name = f"fake-constant-{power_w:g}W"

    def availability(self) -> Availability:
        """Always available (and labelled fake)."""
        return Availability(True, f"simulated device at {self._power_w:g} W (fake)")

    async def read(self) -> EnergySample:
        """Watts times seconds since creation."""
        now = time.monotonic()
        return EnergySample(self._power_w * (now - self._start_s), now)
