"""DCGMMeter: NVIDIA GPUs through the DCGM exporter's per-GPU energy counter (Prometheus text).

`DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION` is a counter in millijoules since the driver loaded
(dcgm-exporter's etc/default-counters.csv: "Total energy consumption since boot (in mJ)"; Volta
and newer). There is one series per GPU, labelled `gpu`, `UUID`, `pci_bus_id`, `device`,
`modelName`, `Hostname`, and on Kubernetes `pod`, `namespace`, `container` of the pod that holds
the GPU. `labels` selects series by exact match. The counter is the whole device's even when a
pod label selects it: a pod time-slicing a GPU with others is metered for the device.

A driver reload resets the counter; the meter reports the smaller reading as it is and leaves
the reset to whoever subtracts readings.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import httpx

from proxy.energy.base import Availability, EnergyMeter, EnergySample, MeterUnavailable
from proxy.energy.exposition import Exposition, ExpositionClient, selector_text

ENERGY_METRIC = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
_J_PER_MJ = 1e-3


def _device_id(labels: Mapping[str, str]) -> str:
    # UUID is stable across reboots and re-indexing; exporters run without it fall back to the
    # index, and as a last resort the label set itself names the series.
    return labels.get("UUID") or labels.get("gpu") or selector_text(labels)


class DCGMMeter(EnergyMeter):
    """Sums the selected GPUs' counters; availability reflects the last scrape."""

    def __init__(self, url: str, labels: dict[str, str] | None = None, timeout_s: float = 2.0,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._labels = dict(labels or {})
        self._client = ExpositionClient(url, timeout_s, transport)
        self.name = f"dcgm:{url}"
        self._last = Availability(False, "not read yet")

    def availability(self) -> Availability:
        """As of the last read."""
        return self._last

    async def read_devices(self) -> dict[str, float]:
        """Joules per GPU UUID, for the GPUs whose series match the selector."""
        try:
            devices_j = self._devices_j(await self._client.scrape())
        except MeterUnavailable as exc:
            self._last = Availability(False, f"{self.name}: {exc}")
            raise MeterUnavailable(self._last.reason) from exc
        self._last = Availability(True, f"DCGM exporter {self._client.url}: {len(devices_j)} "
                                        f"GPU(s) matching {selector_text(self._labels)}")
        return devices_j

    async def read(self) -> EnergySample:
        """Cumulative joules of the selected GPUs."""
        devices_j = await self.read_devices()
        return EnergySample(sum(devices_j.values()), time.monotonic())

    def _devices_j(self, exposition: Exposition) -> dict[str, float]:
        if not exposition.has(ENERGY_METRIC):
            raise MeterUnavailable(f"the scrape has no {ENERGY_METRIC} (add it to the exporter's "
                                   "counters CSV; it needs a Volta or newer GPU)")
        series = exposition.series(ENERGY_METRIC, self._labels)
        if not series:
            raise MeterUnavailable(f"no {ENERGY_METRIC} series match "
                                   f"{selector_text(self._labels)}")
        devices_j: dict[str, float] = {}
        for one in series:
            # The exporter repeats a GPU's series once per pod sharing it (time-slicing) and,
            # with MIG, per GPU instance; energy is a device-level field, so every copy carries
            # the device's counter and a device counts once.
            device = _device_id(one.labels)
            devices_j[device] = max(devices_j.get(device, 0.0), one.value * _J_PER_MJ)
        return devices_j

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
