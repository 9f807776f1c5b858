"""Embodied carbon amortised over device time (pure).

A device's manufacturing footprint (kgCO2e) is spread evenly over its service life; a request is
charged for its share of the device's busy seconds (see energy/attribution.py), so idle time is
not charged to anyone.
"""

from __future__ import annotations

import dataclasses

SECONDS_PER_YEAR = 365 * 24 * 3600

# Sprout's simulator: one inference server, 26,356.568 gCO2e embodied (whole server: chassis,
# CPUs, memory, storage and GPU board), over a 5-year life (../shared/data/sprout/README.md,
# "How the Sprout simulator uses these data", item 5).
SPROUT_SERVER_KG_CO2E = 26.356568
SPROUT_SERVER_LIFETIME_YEARS = 5.0


@dataclasses.dataclass(frozen=True, slots=True)
class EmbodiedDevice:
    """A device's manufacturing footprint, what it covers, its life and where it comes from."""

    kg_co2e: float
    lifetime_years: float
    scope: str
    source: str


DEVICES: dict[str, EmbodiedDevice] = {
    "sprout-server": EmbodiedDevice(
        SPROUT_SERVER_KG_CO2E, SPROUT_SERVER_LIFETIME_YEARS, "whole inference server",
        "Sprout simulator (../shared/data/sprout/README.md)"),
    "a100-instance-share": EmbodiedDevice(
        318.0, 5.0, "1/8 of an 8x A100 instance: GPU, CPU, DRAM, SSD/HDD and IC packaging",
        "Chien et al., Reducing the Carbon Impact of Generative AI Inference, HotCarbon 2023 "
        "(lifetime not stated there: 5 years assumed)"),
    "apple-silicon-mini": EmbodiedDevice(
        32.0, 4.0, "a whole base Mac mini (M4, 16 GB, 256 GB): production and transport; "
        "the nearest published figure for M1-class machines",
        "Apple's environmental data for the 2024 Mac mini (as reported by Canary Media); "
        "4-year use as in Apple's product reports"),
    "gpu-board": EmbodiedDevice(
        60.0, 4.0, "one powerful GPU board only (no host)",
        "EcoDiag, CNRS EcoInfo (GPU category: 60 kgCO2e, 4-year duration)"),
}


def embodied_g_per_s(device_kg_co2e: float, lifetime_years: float) -> float:
    """Grams of embodied CO2e per second of device time."""
    return device_kg_co2e * 1000.0 / (lifetime_years * SECONDS_PER_YEAR)


def operational_g(energy_j: float, ci_g_per_kwh: float, pue: float) -> float:
    """Operational emissions: joules -> kWh, times grid intensity and facility PUE."""
    return energy_j / 3.6e6 * ci_g_per_kwh * pue
