"""NVMLMeter: NVIDIA GPUs through pynvml (nvidia-ml-py), imported lazily.

Volta and newer expose a cumulative counter, `nvmlDeviceGetTotalEnergyConsumption` (mJ).
Older GPUs only report instantaneous power (`nvmlDeviceGetPowerUsage`, mW), which this meter
integrates between reads (trapezoids), so the meter's tick sets its resolution.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

from proxy.energy.base import Availability, EnergyMeter, EnergySample, MeterUnavailable


def _load_pynvml() -> ModuleType:
    import pynvml

    module: ModuleType = pynvml
    return module


class NVMLMeter(EnergyMeter):
    """Sums the selected devices (all when `devices` is None)."""

    name = "nvml"

    def __init__(self, devices: list[int] | None = None, library: ModuleType | Any = None):
        self._devices = devices
        self._library = library
        self._handles: list[Any] = []
        self._counter: list[bool] = []
        self._start_mj: list[float] = []
        self._last_power: list[tuple[float, float]] = []  # (time s, watts) per sampled device
        self._integrated_j: list[float] = []
        self._reason = ""

    def _init(self) -> bool:
        if self._handles:
            return True
        try:
            nvml = self._library or _load_pynvml()
            nvml.nvmlInit()
            count = nvml.nvmlDeviceGetCount()
            indices = self._devices if self._devices is not None else list(range(count))
            handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in indices]
        except ImportError:
            self._reason = "pynvml (nvidia-ml-py) is not installed"
            return False
        except Exception as exc:  # NVMLError and friends: no driver, no GPU
            self._reason = f"NVML unavailable: {exc}"
            return False
        if not handles:
            self._reason = "no NVIDIA GPU selected"
            return False
        self._library = nvml
        now = time.monotonic()
        for handle in handles:
            try:
                start = float(nvml.nvmlDeviceGetTotalEnergyConsumption(handle))
                self._counter.append(True)
                self._start_mj.append(start)
            except Exception:  # pre-Volta: integrate power samples instead
                self._counter.append(False)
                self._start_mj.append(0.0)
            self._last_power.append((now, self._power_w(handle)))
            self._integrated_j.append(0.0)
        self._handles = handles
        return True

    def _power_w(self, handle: Any) -> float:
        try:
            return float(self._library.nvmlDeviceGetPowerUsage(handle)) / 1000.0
        except Exception:
            return 0.0

    def availability(self) -> Availability:
        """Initialise NVML once; never raises."""
        if self._init():
            kinds = ["counter" if c else "power sampling" for c in self._counter]
            return Availability(True, f"{len(self._handles)} GPU(s): {', '.join(kinds)}")
        return Availability(False, self._reason)

    async def read(self) -> EnergySample:
        """Joules since the first read, summed over devices."""
        if not self._init():
            raise MeterUnavailable(self._reason)
        now = time.monotonic()
        total = 0.0
        for i, handle in enumerate(self._handles):
            if self._counter[i]:
                current = float(self._library.nvmlDeviceGetTotalEnergyConsumption(handle))
                total += (current - self._start_mj[i]) / 1000.0
                continue
            watts = self._power_w(handle)
            then, previous = self._last_power[i]
            self._integrated_j[i] += (previous + watts) / 2 * (now - then)
            self._last_power[i] = (now, watts)
            total += self._integrated_j[i]
        return EnergySample(total, now)
