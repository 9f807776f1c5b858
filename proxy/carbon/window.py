"""Causal statistics of intensity: min, max and mean over a trailing window, never the future."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime, timedelta

from proxy.carbon.base import CIReading


@dataclasses.dataclass(frozen=True, slots=True)
class CIStats:
    """Trailing statistics (gCO2e/kWh) and how many readings they rest on."""

    min_g_per_kwh: float
    max_g_per_kwh: float
    mean_g_per_kwh: float
    readings: int


def trailing_stats(
    readings: Iterable[CIReading], now: datetime, window: timedelta, current: CIReading
) -> CIStats:
    """Stats over readings with now - window <= at <= now, the current reading included."""
    start = now - window
    values = [r.g_per_kwh for r in readings if start <= r.at <= now]
    values.append(current.g_per_kwh)
    return CIStats(min(values), max(values), sum(values) / len(values), len(values))
