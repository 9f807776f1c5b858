"""Build the LP's terms from what the ledger and the judge have observed (pure).

- Traffic share per class: decayed request counts. Each request weighs 2^(-age / half-life).
  The proxy hands over `DecayedUsage`, sums the database computes from hourly rollups
  (`usage_hourly`), an hour's rows weighed by their mean age: for a half-life h a bucket's
  weight differs from the sum of its rows' own weights by at most (ln 2 / h)^2 / 8 (Jensen,
  ages within one hour), 1.0e-4 at the default 24 h. Decayed means (energy, time) weigh an
  hour's rows alike where their own weights differ by up to 2^(1/h) - 1 (2.9% at 24 h); on
  mixed traffic that mostly cancels (5e-4 in tests/integration/test_optimiser_aggregates.py).
- Energy and time per (class, level): decayed means of served requests (metered joules when the
  row has them, else output tokens x J/token, labelled an estimate). Levels never served in a
  class are scaled from the class's observed levels by level ratios: observed across classes
  when available, else Sprout's means (Llama-2-13B, four datasets of ../shared/data/sprout:
  L1 = 0.23 x L0 and L2 = 0.154 x L0 in both energy and time).
- Quality per (class, level): decayed verdicts, shrunk to the global mix, lower-bounded.
Without enough verdicts or traffic the caller falls back to the safe policy (no directive).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from proxy.optimiser.lp import ClassTerms
from proxy.optimiser.quality import VerdictCounts

SPROUT_LEVEL_RATIOS = (1.0, 0.23, 0.154)
# Sprout's server: 26,356.568 gCO2e embodied over a 5-year life, per second of generation.
SPROUT_EMBODIED_G_PER_S = 26356.568 / (5 * 365 * 24 * 3600)


@dataclasses.dataclass(frozen=True, slots=True)
class Usage:
    """One finished request from the ledger."""

    task_class: str
    level: str
    completion_tokens: int
    latency_s: float
    energy_j: float | None
    age_h: float
    is_evaluator: bool = False  # regenerations: they measure every level but are not traffic

    def decayed(self, half_life_h: float) -> DecayedUsage:
        """The request weighted for a half-life."""
        weight = decay_weight(self.age_h, half_life_h)
        metered = self.energy_j is not None
        return DecayedUsage(self.task_class, self.level, weight,
                            weight * (self.energy_j or 0.0),
                            0.0 if metered else weight * self.completion_tokens,
                            weight * self.latency_s, self.is_evaluator)


@dataclasses.dataclass(frozen=True, slots=True)
class DecayedUsage:
    """Requests of one (class, level, evaluator or not), each weighted by `decay_weight`."""

    task_class: str
    level: str
    requests: float  # the sum of the weights
    metered_j: float  # of the rows that have a joule figure
    unmetered_output_tokens: float  # of the rows that do not (estimated at J/token)
    latency_s: float
    is_evaluator: bool = False


def decay_weight(age_h: float, half_life_h: float) -> float:
    """2^(-age / half-life): what an observation of that age counts for."""
    return math.exp(-math.log(2) / half_life_h * age_h)


@dataclasses.dataclass(frozen=True, slots=True)
class Verdict:
    """One judge verdict: the winning level for a prompt of a class."""

    task_class: str
    winner: str
    age_h: float


@dataclasses.dataclass(frozen=True, slots=True)
class Terms:
    """The LP's terms, or why there are none (cold start)."""

    terms: list[ClassTerms] | None
    reason: str
    verdicts: float
    requests: float


def build_terms(
    levels: Sequence[str],
    classes: Sequence[str],
    usage: Sequence[Usage | DecayedUsage],
    verdicts: Sequence[Verdict],
    *,
    ci_g_per_kwh: float,
    j_per_output_token: float,
    half_life_h: float,
    prior_strength: float,
    lower_bound_z: float,
    min_verdicts: int,
    embodied_g_per_s: float = SPROUT_EMBODIED_G_PER_S,
    pue: float = 1.0,
) -> Terms:
    """Terms per class for `proxy.optimiser.lp.solve`.

    `DecayedUsage` must have been weighed with the same `half_life_h`.
    """
    rate = math.log(2) / half_life_h
    level_index = {level: i for i, level in enumerate(levels)}
    class_index = {name: i for i, name in enumerate(classes)}
    counts = VerdictCounts(tuple(classes), len(levels))
    judged = 0.0
    for verdict in verdicts:
        if verdict.task_class in class_index and verdict.winner in level_index:
            weight = math.exp(-rate * verdict.age_h)
            counts.add(verdict.task_class, level_index[verdict.winner], weight)
            judged += weight
    # One hidden last row collects usage of classes outside `classes` (the regex classes right
    # after a learned-class predictor takes over): a class with no usage of its own yet is
    # filled from the overall means, and those include it.
    energy_sum = np.zeros((len(classes) + 1, len(levels)))
    time_sum = np.zeros_like(energy_sum)
    weight_sum = np.zeros_like(energy_sum)
    traffic = np.zeros(len(classes) + 1)
    for item in usage:
        sums = item.decayed(half_life_h) if isinstance(item, Usage) else item
        c, lvl = class_index.get(sums.task_class, len(classes)), level_index.get(sums.level)
        if lvl is None:
            continue
        energy_sum[c, lvl] += sums.metered_j + sums.unmetered_output_tokens * j_per_output_token
        time_sum[c, lvl] += sums.latency_s
        weight_sum[c, lvl] += sums.requests
        if not sums.is_evaluator:
            traffic[c] += sums.requests
    served = traffic.sum()  # every class, the hidden row too
    if judged < min_verdicts:
        return Terms(None, f"cold start: {judged:.2f} recent judge verdicts (weighted by "
                           f"age), need {min_verdicts} (run the evaluator)", judged, served)
    if served <= 0:
        return Terms(None, "cold start: no served requests in the ledger yet", judged, served)
    energy = _fill_levels(energy_sum, weight_sum)[:-1]
    seconds = _fill_levels(time_sum, weight_sum)[:-1]
    shares = traffic[:-1] + 1e-3  # unseen classes keep a row of their own
    quality = counts.scores(prior_strength, lower_bound_z)
    carbon = energy / 3.6e6 * ci_g_per_kwh * pue + embodied_g_per_s * seconds
    terms = [ClassTerms(name, float(shares[i]), tuple(float(v) for v in carbon[i]),
                        quality[name]) for i, name in enumerate(classes)]
    return Terms(terms, "optimal inputs", judged, served)


def _fill_levels(sums: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Means per (class, level), filling unobserved cells by level ratios and class means."""
    seen = weights > 1e-12
    means = np.divide(sums, weights, out=np.zeros_like(sums), where=seen)
    levels = sums.shape[1]
    default = np.array([SPROUT_LEVEL_RATIOS[i] if i < len(SPROUT_LEVEL_RATIOS) else 1.0
                        for i in range(levels)])
    # Level ratios observed across classes (relative to L0), where both were served.
    ratios = default.copy()
    both = seen[:, 0]
    for level in range(1, levels):
        mask = both & seen[:, level]
        if mask.any() and means[mask, 0].sum() > 0:
            ratios[level] = means[mask, level].sum() / means[mask, 0].sum()
    # Each class's L0-equivalent from whatever levels it has; unseen classes take the overall.
    equivalents = np.divide(means, ratios, out=np.zeros_like(means), where=seen & (ratios > 0))
    per_class = np.divide(equivalents.sum(axis=1), seen.sum(axis=1),
                          out=np.zeros(sums.shape[0]), where=seen.any(axis=1))
    overall = per_class[seen.any(axis=1)].mean() if seen.any() else 0.0
    per_class = np.where(seen.any(axis=1), per_class, overall)
    filled: np.ndarray = np.where(seen, means, per_class[:, None] * ratios[None, :])
    return filled
