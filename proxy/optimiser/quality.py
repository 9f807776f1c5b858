"""Quality scores q(class, level) from judge verdicts, with decay and shrinkage (pure).

A verdict names the level whose answer the judge preferred (best-of-N, Sprout's design), so
q(class, level) is a win share. Counts decay by age (the evaluator rule's rate: an assessment's
weight halves in a day) and a class with few verdicts is pulled towards the all-class shares:

    q_c = (counts_c + k * q_global) / (n_c + k)

with k = `prior_strength` pseudo-verdicts: a class with no verdicts scores exactly like the
all-class mix, and a class with many is scored on its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np


class VerdictCounts:
    """Decayed verdict counts per class and level."""

    def __init__(self, classes: tuple[str, ...], levels: int) -> None:
        self.classes = classes
        self._index = {name: i for i, name in enumerate(classes)}
        self.counts = np.zeros((len(classes), levels))

    def decay(self, hours: float, rate_per_h: float) -> None:
        """Age every count by `hours`."""
        self.counts *= math.exp(-rate_per_h * hours)

    def add(self, task_class: str, best_level: int, weight: float = 1.0) -> None:
        """Record one verdict."""
        self.counts[self._index[task_class], best_level] += weight

    def add_many(self, class_indices: np.ndarray, best_levels: np.ndarray) -> None:
        """Record many verdicts at once (indices into `classes`)."""
        np.add.at(self.counts, (class_indices, best_levels), 1.0)

    def scores(
        self, prior_strength: float = 20.0, lower_bound_z: float = 0.0
    ) -> dict[str, tuple[float, ...]]:
        """Q per class; all-zero counts give a uniform global prior.

        With `lower_bound_z` > 0 every level but the baseline (index 0) is scored by its lower
        confidence bound q - z * sqrt(q (1 - q) / (n + k)): an LP that trades baseline quality
        for carbon then cannot exploit estimation noise (the optimiser's curse), so the quality
        it promises holds in expectation on the traffic it has not yet seen.
        """
        totals = self.counts.sum(axis=1)
        overall = self.counts.sum(axis=0)
        levels = self.counts.shape[1]
        global_q = overall / overall.sum() if overall.sum() > 0 else np.full(levels, 1 / levels)
        effective = totals + prior_strength
        shrunk = (self.counts + prior_strength * global_q) / effective[:, None]
        if lower_bound_z > 0:
            margin = lower_bound_z * np.sqrt(shrunk * (1 - shrunk) / effective[:, None])
            margin[:, 0] = 0.0
            shrunk = np.clip(shrunk - margin, 0.0, 1.0)
        return {name: tuple(float(v) for v in shrunk[i]) for i, name in enumerate(self.classes)}

    def global_scores(self) -> tuple[float, ...]:
        """Q over all classes together (Sprout's single mix)."""
        overall = self.counts.sum(axis=0)
        if overall.sum() <= 0:
            return tuple(1 / len(overall) for _ in overall)
        return tuple(float(v) for v in overall / overall.sum())


def shares(counts: Mapping[str, float]) -> dict[str, float]:
    """Normalised traffic shares (empty or all-zero input gives an empty mapping)."""
    total = sum(counts.values())
    return {name: value / total for name, value in counts.items() if value > 0} if total else {}
