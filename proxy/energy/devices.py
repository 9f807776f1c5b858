"""DeviceMap: which device a row was served on, and which meters the leader reads (pure).

A device id names one energy counter fleet-wide. Rows and samples meet on it:

- a sprout worker names its device on every response (`x-sprout-device`) and in its
  `/metrics/energy` document, so pods behind one Service URL are told apart;
- a pool with one pool-level meter (`remote` with `meter_url`, `dcgm`, `kepler`, or this host's
  `nvml`/`rapl`/`apple`) is one device, `accounting.device` or `<pool>:<meter>`;
- otherwise each backend URL is its own device, `backend:<url>`, metered (with `auto`) by the
  `/metrics/energy` beside it: every backend, not just the first.
"""

from __future__ import annotations

import dataclasses
import functools
from urllib.parse import urlsplit

from proxy.pools.config import PoolConfig
from proxy.redact import redact_url

PER_BACKEND_METERS = ("auto", "estimate")


@dataclasses.dataclass(frozen=True, slots=True)
class MeterTarget:
    """One meter the leader samples, and the device its samples belong to by default."""

    pool: str
    spec: str  # the meter kind (auto | remote | dcgm | kepler | nvml | rapl | apple)
    url: str | None  # where it is read (remote-style meters)
    device_id: str  # used unless the reading names its own device

    @property
    def key(self) -> tuple[str, str | None, str]:
        """Two pools naming the same meter share one reader."""
        return (self.spec, self.url, self.device_id)


@functools.lru_cache(maxsize=4096)  # per request; the URLs are the configured backends
def backend_device(url: str) -> str:
    """The device id of a backend that names none (credentials in its URL hidden)."""
    return f"backend:{redact_url(url)}"


class DeviceMap:
    """Built once from the pool configs."""

    def __init__(self, pools: list[PoolConfig]) -> None:
        self._pool_device: dict[str, str] = {}
        self.targets: list[MeterTarget] = []
        seen: set[tuple[str, str | None, str]] = set()
        for pool in pools:
            meter = pool.accounting.meter
            if meter in PER_BACKEND_METERS and not (meter == "auto" and pool.accounting.meter_url):
                if meter == "auto" and pool.kind in ("openai", "worker"):
                    for url in pool.base_urls:
                        parts = urlsplit(url)
                        target = MeterTarget(pool.name, "remote",
                                             f"{parts.scheme}://{parts.netloc}/metrics/energy",
                                             backend_device(url))
                        if target.key not in seen:
                            seen.add(target.key)
                            self.targets.append(target)
                continue
            device = pool.accounting.device or f"{pool.name}:{meter}"
            self._pool_device[pool.name] = device
            spec = "remote" if meter == "auto" else meter
            target = MeterTarget(pool.name, spec, pool.accounting.meter_url, device)
            if target.key not in seen:
                seen.add(target.key)
                self.targets.append(target)

    def device_for(self, pool: str, backend_url: str) -> str:
        """The device of a row whose backend did not name one."""
        return self._pool_device.get(pool) or backend_device(backend_url or pool)
