"""Fill a settled row's energy and carbon columns (pure)."""

from __future__ import annotations

from proxy.accounting.record import LedgerRow
from proxy.carbon.base import CIReading
from proxy.carbon.embodied import operational_g


def fill(row: LedgerRow, *, energy_j: float, busy_s: float, method: str, reading: CIReading,
         pue: float, embodied_g_per_s: float) -> LedgerRow:
    """Joules with how they were obtained, grid intensity with its source, and both grams."""
    if method == "none":  # the request never reached a device
        return row
    row.energy_j = energy_j
    row.energy_method = method
    row.ci_g_per_kwh = reading.g_per_kwh
    row.ci_source = reading.source
    row.pue = pue
    row.operational_g_co2e = operational_g(energy_j, reading.g_per_kwh, pue)
    row.embodied_g_co2e = busy_s * embodied_g_per_s
    return row
