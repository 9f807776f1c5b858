"""ProvisionalAccounts: a row's first energy figure, from its pool's profile (request path).

Every row that reached a device leaves the proxy with joules and gCO2e at once, labelled
`energy_method = provisional`: the pool's hardware profile times the row's tokens, the grid
intensity the CarbonService holds now, the pool's PUE, and the embodied share of its time on
the device. Settlement later replaces the figure with the device's metered joules split among
every replica's rows (`measured` / `apportioned`) or a fleet-wide estimate (`estimated`).
No I/O: a dict lookup, a multiplication and a cached reading.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from proxy.carbon.base import CIReading
from proxy.carbon.embodied import operational_g
from proxy.energy.estimate import HardwareProfile

PROVISIONAL = "provisional"


@dataclasses.dataclass(frozen=True, slots=True)
class PoolAccounts:
    """A pool's fixed accounting facts."""

    profile: HardwareProfile
    params_b: float | None
    region: str | None
    pue: float
    embodied_g_per_s: float
    prefill_weight: float = 1.0  # how settlement weighs prompt against answer tokens
    decode_weight: float = 4.0
    # A disaggregated pool: its prefill and decode pools (its own figures are its decode
    # pool's); its requests in flight hold back both pools' settlement windows.
    members: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Footprint:
    """A row's energy and carbon columns."""

    energy_j: float
    energy_method: str
    ci_g_per_kwh: float
    ci_source: str
    pue: float
    operational_g_co2e: float
    embodied_g_co2e: float


class ProvisionalAccounts:
    """`footprint` gives a finished request its provisional energy and carbon."""

    def __init__(self, pools: dict[str, PoolAccounts],
                 intensity: Callable[[str | None], CIReading]) -> None:
        self.pools = pools
        self._intensity = intensity

    def footprint(self, pool: str | None, prompt_tokens: int | None,
                  completion_tokens: int | None, served_at: datetime | None,
                  ended_at: datetime) -> Footprint | None:
        """None for a request that never reached a device."""
        accounts = self.pools.get(pool or "")
        if accounts is None or served_at is None:
            return None
        energy_j = accounts.profile.predict_j(prompt_tokens or 0, completion_tokens or 0,
                                              accounts.params_b)
        busy_s = max(0.0, (ended_at - served_at).total_seconds())
        reading = self._intensity(accounts.region)
        return Footprint(energy_j, PROVISIONAL, reading.g_per_kwh, reading.source,
                         accounts.pue, operational_g(energy_j, reading.g_per_kwh, accounts.pue),
                         busy_s * accounts.embodied_g_per_s)


def combined(decode: Footprint, prefill: Footprint) -> Footprint:
    """A disaggregated row's totals: both phases' joules and gCO2e (the decode's grid)."""
    return dataclasses.replace(
        decode, energy_j=decode.energy_j + prefill.energy_j,
        operational_g_co2e=decode.operational_g_co2e + prefill.operational_g_co2e,
        embodied_g_co2e=decode.embodied_g_co2e + prefill.embodied_g_co2e)
