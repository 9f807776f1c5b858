"""KeplerMeter: a container's joules as Kepler attributes them (Prometheus text, per container).

Kepler renamed its metrics between versions; both shapes are read:

- 0.7.x: `kepler_container_joules_total{container_id, container_name, container_namespace,
  pod_name, mode}`, already the sum of package, DRAM, "other" and GPU joules per `mode`
  (dynamic or idle; pkg/metrics/container/metrics.go). Its per-component families
  (`kepler_container_package_joules_total`, `..._dram_...`, `..._gpu_...`) are parts of that
  sum, so when it is present nothing else is added.
- 0.10 and later: `kepler_container_cpu_joules_total{container_id, container_name, runtime,
  state, zone, pod_id}` (one series per RAPL zone) plus, where built with GPU support,
  `kepler_container_gpu_joules_total{..., gpu, vendor, ...}` (docs/user/metrics.md, EP-003).
  These containers carry `pod_id` (the pod's UID), not its name.

`labels` selects series by exact match; `modes` keeps 0.7's dynamic and/or idle share (series
without a `mode` label always count); `zones` picks the RAPL zones of the newer CPU counter
(series without a `zone` label always count).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import httpx

from proxy.energy.base import Availability, EnergyMeter, EnergySample, MeterUnavailable
from proxy.energy.exposition import Exposition, ExpositionClient, Series, selector_text

AGGREGATE_METRIC = "kepler_container_joules_total"  # 0.7.x
CPU_METRIC = "kepler_container_cpu_joules_total"  # 0.10+
GPU_METRIC = "kepler_container_gpu_joules_total"  # 0.10+ with GPU support
# `core` and `uncore` lie inside `package`, and `psys` covers the whole SoC, so adding them to
# package + DRAM would count joules twice.
DEFAULT_ZONES = ("package", "dram")
DEFAULT_MODES = ("dynamic", "idle")


class KeplerMeter(EnergyMeter):
    """Sums the selected containers' joule counters; availability reflects the last scrape."""

    def __init__(self, url: str, labels: dict[str, str] | None = None, timeout_s: float = 2.0,
                 transport: httpx.AsyncBaseTransport | None = None,
                 modes: Iterable[str] = DEFAULT_MODES,
                 zones: Iterable[str] = DEFAULT_ZONES) -> None:
        self._labels = dict(labels or {})
        self._modes = frozenset(modes)
        self._zones = frozenset(zones)
        self._client = ExpositionClient(url, timeout_s, transport)
        self.name = f"kepler:{url}"
        self._last = Availability(False, "not read yet")

    def availability(self) -> Availability:
        """As of the last read."""
        return self._last

    async def read(self) -> EnergySample:
        """Cumulative joules of the selected containers."""
        try:
            energy_j, source = self._energy_j(await self._client.scrape())
        except MeterUnavailable as exc:
            self._last = Availability(False, f"{self.name}: {exc}")
            raise MeterUnavailable(self._last.reason) from exc
        self._last = Availability(True, f"Kepler {self._client.url}: {source} matching "
                                        f"{selector_text(self._labels)}")
        return EnergySample(energy_j, time.monotonic())

    def _energy_j(self, exposition: Exposition) -> tuple[float, str]:
        if exposition.has(AGGREGATE_METRIC):
            chosen = [s for s in exposition.series(AGGREGATE_METRIC, self._labels)
                      if self._mode_kept(s)]
            if not chosen:
                raise MeterUnavailable(self._no_match(AGGREGATE_METRIC))
            return sum(s.value for s in chosen), AGGREGATE_METRIC
        if not (exposition.has(CPU_METRIC) or exposition.has(GPU_METRIC)):
            raise MeterUnavailable(f"the scrape has none of {AGGREGATE_METRIC}, {CPU_METRIC}, "
                                   f"{GPU_METRIC} (is this Kepler's /metrics?)")
        cpu = [s for s in exposition.series(CPU_METRIC, self._labels)
               if self._mode_kept(s) and self._zone_kept(s)]
        gpu = [s for s in exposition.series(GPU_METRIC, self._labels) if self._mode_kept(s)]
        if not (cpu or gpu):
            raise MeterUnavailable(self._no_match(f"{CPU_METRIC} (zones "
                                                  f"{sorted(self._zones)}) or {GPU_METRIC}"))
        parts = [name for name, chosen in ((CPU_METRIC, cpu), (GPU_METRIC, gpu)) if chosen]
        return sum(s.value for s in cpu + gpu), " + ".join(parts)

    def _mode_kept(self, series: Series) -> bool:
        mode = series.labels.get("mode")
        return mode is None or mode in self._modes

    def _zone_kept(self, series: Series) -> bool:
        zone = series.labels.get("zone")
        return zone is None or zone in self._zones

    def _no_match(self, metric: str) -> str:
        return (f"no {metric} series match {selector_text(self._labels)} "
                f"with mode in {sorted(self._modes)}")

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
