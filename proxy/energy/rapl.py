"""RAPLMeter: Linux powercap `energy_uj` counters (CPU package and DRAM domains).

Each domain counts microjoules up to `max_energy_range_uj` and wraps to zero; the meter keeps
the last raw value per domain and accumulates deltas, adding the range on a wrap. Reading
the counters usually needs root since 2020 (CVE-2020-8694): "permission denied" makes the meter
unavailable rather than an error. `idle_w` (optional) is subtracted so that only the load's
energy is attributed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from proxy.energy.base import Availability, EnergyMeter, EnergySample, MeterUnavailable

POWERCAP = Path("/sys/class/powercap")


class RAPLMeter(EnergyMeter):
    """Sums the selected domains of every package (`intel-rapl:N` and subdomains)."""

    name = "rapl"

    def __init__(self, root: Path = POWERCAP, domains: tuple[str, ...] = ("package", "dram"),
                 idle_w: float = 0.0, reader: Callable[[Path], str] = Path.read_text) -> None:
        self._root = root
        self._read = reader  # the kernel boundary (tests replay counters through files)
        self._domains = domains
        self._idle_w = idle_w
        self._last: dict[Path, int] = {}
        self._total_uj = 0
        self._started_s: float | None = None

    def _zones(self) -> list[Path]:
        zones = []
        for name_file in sorted(self._root.glob("intel-rapl:*/name")) + sorted(
                self._root.glob("intel-rapl:*/intel-rapl:*/name")):
            label = self._read(name_file).strip()
            if any(label.startswith(domain) for domain in self._domains):
                zones.append(name_file.parent)
        return zones

    def availability(self) -> Availability:
        """Available when at least one selected domain's counter is readable."""
        try:
            zones = self._zones()
            if not zones:
                return Availability(False, f"no RAPL domains {self._domains} under {self._root}")
            for zone in zones:
                int(self._read(zone / "energy_uj"))
        except PermissionError:
            return Availability(False, "RAPL counters are not readable (permission denied)")
        except (OSError, ValueError) as exc:
            return Availability(False, f"RAPL unreadable: {exc}")
        return Availability(True, f"{len(zones)} RAPL domain(s)")

    async def read(self) -> EnergySample:
        """Cumulative joules of the selected domains since the first read (wraps handled)."""
        now = time.monotonic()
        try:
            for zone in self._zones():
                raw = int(self._read(zone / "energy_uj"))
                last = self._last.get(zone)
                if last is not None:
                    delta = raw - last
                    if delta < 0:  # the counter wrapped at max_energy_range_uj
                        delta += int(self._read(zone / "max_energy_range_uj"))
                    self._total_uj += delta
                self._last[zone] = raw
        except (OSError, ValueError) as exc:
            raise MeterUnavailable(f"RAPL read failed: {exc}") from exc
        if self._started_s is None:
            self._started_s = now
        idle_j = self._idle_w * (now - self._started_s)
        return EnergySample(max(0.0, self._total_uj / 1e6 - idle_j), now)
