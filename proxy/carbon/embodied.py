"""Embodied carbon amortised over device time (pure).

A device's manufacturing footprint (kgCO2e) is spread evenly over its service life; a request is
charged for its share of the device's busy seconds (see energy/attribution.py), so idle time is
not charged to anyone.
"""

from __future__ import annotations

SECONDS_PER_YEAR = 365 * 24 * 3600

# Sprout's simulator: one inference server, 26,356.568 gCO2e embodied (whole server: chassis,
# CPUs, memory, storage and GPU board), over a 5-year life (../shared/data/sprout/README.md,
# "How the Sprout simulator uses these data", item 5).
SPROUT_SERVER_KG_CO2E = 26.356568
SPROUT_SERVER_LIFETIME_YEARS = 5.0


def embodied_g_per_s(device_kg_co2e: float, lifetime_years: float) -> float:
    """Grams of embodied CO2e per second of device time."""
    return device_kg_co2e * 1000.0 / (lifetime_years * SECONDS_PER_YEAR)


def operational_g(energy_j: float, ci_g_per_kwh: float, pue: float) -> float:
    """Operational emissions: joules -> kWh, times grid intensity and facility PUE."""
    return energy_j / 3.6e6 * ci_g_per_kwh * pue
