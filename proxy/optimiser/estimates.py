"""DecayedMeans: exponentially weighted means per key (energy, time, tokens per class/level)."""

from __future__ import annotations

import math

import numpy as np


class DecayedMeans:
    """Weighted sums that decay with age, so recent observations count more (pure, in memory)."""

    def __init__(self, keys: int, levels: int) -> None:
        self._sums = np.zeros((keys, levels))
        self._weights = np.zeros((keys, levels))

    def decay(self, hours: float, rate_per_h: float) -> None:
        """Age everything by `hours`."""
        factor = math.exp(-rate_per_h * hours)
        self._sums *= factor
        self._weights *= factor

    def add(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Observations: `keys` (n,) row indices, `values` (n, levels)."""
        np.add.at(self._sums, keys, values)
        np.add.at(self._weights, keys, 1.0)

    def means(self) -> np.ndarray:
        """Mean per key and level; keys never seen take the mean over all keys."""
        total_weight = self._weights.sum(axis=0)
        overall = np.divide(self._sums.sum(axis=0), total_weight,
                            out=np.zeros_like(total_weight), where=total_weight > 0)
        seen = self._weights > 1e-9
        own = np.divide(self._sums, self._weights, out=np.zeros_like(self._sums), where=seen)
        return np.where(seen, own, overall[None, :])
