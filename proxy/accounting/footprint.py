"""Fill a row's energy and carbon columns (pure): provisional on the request path, final later."""

from __future__ import annotations

from proxy.accounting.record import LedgerRow
from proxy.carbon.base import CIReading
from proxy.carbon.embodied import operational_g


def fill(row: LedgerRow, *, energy_j: float, busy_s: float, method: str, reading: CIReading,
         pue: float, embodied_g_per_s: float) -> LedgerRow:
    """Joules with how they were obtained, grid intensity with its source, and both grams."""
    if method == "none":  # the request never reached a device
        return row
    return row.replace(
        energy_j=energy_j, energy_method=method, ci_g_per_kwh=reading.g_per_kwh,
        ci_source=reading.source, pue=pue,
        operational_g_co2e=operational_g(energy_j, reading.g_per_kwh, pue),
        embodied_g_co2e=busy_s * embodied_g_per_s)
