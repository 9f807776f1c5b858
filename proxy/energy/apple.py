"""AppleMeter: Apple silicon CPU/GPU/ANE power from `powermetrics` (macOS, needs root).

`powermetrics --samplers cpu_power,gpu_power -i MS -n 1` prints lines such as
"CPU Power: 1523 mW" and "GPU Power: 401 mW"; the meter integrates the combined power over the
time between reads. Off macOS, or without root, it is unavailable.
"""

from __future__ import annotations

import asyncio
import platform
import re
import shutil
import time

from proxy.energy.base import Availability, EnergyMeter, EnergySample, MeterUnavailable

_POWER = re.compile(r"^(CPU|GPU|ANE|Combined) Power:\s*([\d.]+)\s*mW", re.MULTILINE)


def parse_powermetrics_mw(text: str) -> float:
    """Combined power in mW from one powermetrics sample (CPU + GPU + ANE if no Combined)."""
    values = {name: float(mw) for name, mw in _POWER.findall(text)}
    if "Combined" in values:
        return values["Combined"]
    return sum(values.get(name, 0.0) for name in ("CPU", "GPU", "ANE"))


class AppleMeter(EnergyMeter):
    """Integrates powermetrics samples (trapezoids between reads)."""

    name = "apple"

    def __init__(self, sample_ms: int = 200) -> None:
        self._sample_ms = sample_ms
        self._total_j = 0.0
        self._last: tuple[float, float] | None = None

    def availability(self) -> Availability:
        """MacOS with powermetrics, run as root."""
        if platform.system() != "Darwin":
            return Availability(False, "Apple powermetrics is only available on macOS")
        if shutil.which("powermetrics") is None:
            return Availability(False, "powermetrics not found")
        import os

        if os.geteuid() != 0:
            return Availability(False, "powermetrics needs root (run the worker with sudo)")
        return Availability(True, "powermetrics")

    async def read(self) -> EnergySample:
        """Sample once and integrate since the previous read."""
        if not self.availability().available:
            raise MeterUnavailable(self.availability().reason)
        process = await asyncio.create_subprocess_exec(
            "powermetrics", "--samplers", "cpu_power,gpu_power", "-i", str(self._sample_ms),
            "-n", "1", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        output, _ = await process.communicate()
        watts = parse_powermetrics_mw(output.decode(errors="replace")) / 1000.0
        now = time.monotonic()
        if self._last is not None:
            then, previous = self._last
            self._total_j += (previous + watts) / 2 * (now - then)
        self._last = (now, watts)
        return EnergySample(self._total_j, now)
