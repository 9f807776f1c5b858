"""Build a pool's meter from its accounting configuration."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from proxy.energy.apple import AppleMeter
from proxy.energy.base import EnergyMeter
from proxy.energy.dcgm import DCGMMeter
from proxy.energy.kepler import KeplerMeter
from proxy.energy.null import NullMeter
from proxy.energy.nvml import NVMLMeter
from proxy.energy.rapl import RAPLMeter
from proxy.energy.remote import RemoteMeter
from proxy.pools.config import PoolConfig


def build_meter(pool: PoolConfig) -> EnergyMeter:
    """The meter a pool's accountant reads (NullMeter means: estimate)."""
    accounting = pool.accounting
    if accounting.meter == "estimate":
        return NullMeter("estimates only (accounting.meter = estimate)")
    if accounting.meter == "remote" or (accounting.meter == "auto" and accounting.meter_url):
        if not accounting.meter_url:
            return NullMeter("accounting.meter = remote needs meter_url")
        return RemoteMeter(accounting.meter_url)
    exporters: dict[str, Callable[[str, dict[str, str]], EnergyMeter]] = {
        "dcgm": DCGMMeter, "kepler": KeplerMeter}
    if accounting.meter in exporters:
        if not accounting.meter_url:
            return NullMeter(f"accounting.meter = {accounting.meter} needs meter_url "
                             "(the exporter's /metrics URL)")
        return exporters[accounting.meter](accounting.meter_url, dict(accounting.meter_labels))
    if accounting.meter == "auto":
        if pool.kind in ("openai", "worker") and pool.base_urls:
            parts = urlsplit(pool.base_urls[0])
            return RemoteMeter(f"{parts.scheme}://{parts.netloc}/metrics/energy")
        return NullMeter("no meter for a litellm pool (estimates)")
    local: dict[str, type[EnergyMeter]] = {"nvml": NVMLMeter, "rapl": RAPLMeter,
                                           "apple": AppleMeter}
    return local[accounting.meter]()
