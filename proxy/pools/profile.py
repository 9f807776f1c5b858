"""A pool's device figures from its configuration: estimate profile and embodied share."""

from __future__ import annotations

import dataclasses

from proxy.carbon.embodied import DEVICES as EMBODIED_DEVICES
from proxy.carbon.embodied import embodied_g_per_s
from proxy.energy.estimate import PROFILES, HardwareProfile
from proxy.pools.config import PoolConfig


def pool_profile(config: PoolConfig) -> HardwareProfile:
    """The pool's hardware profile with its configured power overrides."""
    accounting = config.accounting
    base = PROFILES.get(accounting.hardware)
    if base is None:
        raise ValueError(f"pool {config.name!r}: unknown hardware profile {accounting.hardware!r}"
                         f" (known: {', '.join(sorted(PROFILES))})")
    return dataclasses.replace(
        base, active_w=accounting.active_w or base.active_w,
        idle_w=accounting.idle_w if accounting.idle_w is not None else base.idle_w)


def pool_embodied_g_per_s(config: PoolConfig) -> float:
    """Embodied gCO2e per second of device use (explicit figures win over the device's)."""
    accounting = config.accounting
    device = EMBODIED_DEVICES.get(accounting.embodied_device)
    if device is None:
        raise ValueError(f"pool {config.name!r}: unknown embodied device "
                         f"{accounting.embodied_device!r} (known: {', '.join(EMBODIED_DEVICES)})")
    return embodied_g_per_s(accounting.embodied_kg_co2e or device.kg_co2e,
                            accounting.lifetime_years or device.lifetime_years)
