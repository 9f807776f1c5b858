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

from proxy.accounting.footprint import fill
from proxy.accounting.record import LedgerRow
from proxy.carbon.base import CIReading
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


class ProvisionalAccounts:
    """`apply(row)` returns the row with its provisional energy and carbon."""

    def __init__(self, pools: dict[str, PoolAccounts],
                 intensity: Callable[[str | None], CIReading]) -> None:
        self.pools = pools
        self._intensity = intensity

    def apply(self, row: LedgerRow) -> LedgerRow:
        """Rows that never reached a device are returned unchanged."""
        accounts = self.pools.get(row.pool or "")
        if accounts is None or row.served_at is None or row.ended_at is None:
            return row
        energy_j = accounts.profile.predict_j(row.prompt_tokens or 0, row.completion_tokens or 0,
                                              accounts.params_b)
        busy_s = max(0.0, (row.ended_at - row.served_at).total_seconds())
        return fill(row, energy_j=energy_j, busy_s=busy_s, method=PROVISIONAL,
                    reading=self._intensity(accounts.region), pue=accounts.pue,
                    embodied_g_per_s=accounts.embodied_g_per_s)
