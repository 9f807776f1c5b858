"""The Sprout LP, per class or global, solved with scipy's HiGHS (pure: values in, values out).

Variables x[c, l]: the probability that a request of class c is served at level l.

    minimise    sum_c share_c * sum_l x[c, l] * carbon_g[c, l]
    subject to  sum_c share_c * sum_l q[c, l] * x[c, l]  >=  (1 - xi * s) * sum_c share_c * q[c, 0]
                sum_l x[c, l] = 1  for every c,   0 <= x <= 1

with s = clamp((CI - CImin) / (CImax - CImin), 0, 1): on a clean grid (s = 0) no quality may be
traded for carbon, on the dirtiest (s = 1) up to a share xi of the no-directive preference q0.
q[c, l] is the share of class c's judged prompts whose best answer was level l, so the left
side is the expected share of requests served at their best level. Sprout (Li et al., EMNLP
2024) solves the `global` form: one mix for all prompts. The `per_class` form keeps Sprout's
single global quality constraint but lets the mix differ by class.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.optimize import linprog

Form = Literal["global", "per_class"]


@dataclasses.dataclass(frozen=True, slots=True)
class ClassTerms:
    """One class's inputs: traffic share, expected gCO2e per request and quality per level."""

    name: str
    share: float
    carbon_g: tuple[float, ...]
    quality: tuple[float, ...]


@dataclasses.dataclass(frozen=True, slots=True)
class Solution:
    """x per class (for `global`, every class has the same row), objective and diagnostics."""

    rows: dict[str, tuple[float, ...]]
    expected_carbon_g: float
    expected_quality: float
    quality_floor: float
    baseline_quality: float
    baseline_carbon_g: float
    tolerance_used: float
    solve_ms: float
    status: str


def tolerance_scale(ci: float, ci_min: float, ci_max: float) -> float:
    """S in [0, 1]: where the current intensity sits between the trailing min and max."""
    if ci_max <= ci_min:
        return 0.0  # no spread observed yet: trade nothing
    return min(1.0, max(0.0, (ci - ci_min) / (ci_max - ci_min)))


def solve(
    terms: Sequence[ClassTerms],
    *,
    xi: float,
    ci: float,
    ci_min: float,
    ci_max: float,
    form: Form = "per_class",
) -> Solution:
    """Solve the LP; shares are normalised, classes with zero share get the baseline row."""
    started = time.perf_counter()
    if not terms:
        raise ValueError("no classes to optimise")
    levels = len(terms[0].carbon_g)
    total_share = sum(t.share for t in terms)
    if total_share <= 0:
        raise ValueError("class shares sum to zero")
    share = np.array([t.share / total_share for t in terms])
    carbon = np.array([t.carbon_g for t in terms], dtype=float)
    quality = np.array([t.quality for t in terms], dtype=float)
    if carbon.shape != (len(terms), levels) or quality.shape != carbon.shape:
        raise ValueError("every class needs one carbon and one quality value per level")

    if form == "global":
        carbon = (share @ carbon)[None, :]
        quality = (share @ quality)[None, :]
        weights = np.array([1.0])
    else:
        weights = share
    classes = carbon.shape[0]
    baseline_quality = float(weights @ quality[:, 0])
    baseline_carbon = float(weights @ carbon[:, 0])
    scale = tolerance_scale(ci, ci_min, ci_max)
    floor = (1.0 - xi * scale) * baseline_quality

    objective = (weights[:, None] * carbon).ravel()
    quality_row = -(weights[:, None] * quality).ravel()
    equalities = np.kron(np.eye(classes), np.ones(levels))
    result = linprog(
        objective,
        A_ub=quality_row[None, :], b_ub=[-floor + 1e-12],
        A_eq=equalities, b_eq=np.ones(classes),
        bounds=(0.0, 1.0), method="highs",
    )
    if result.status != 0:  # cannot happen for valid inputs (all-baseline is feasible)
        x = np.zeros((classes, levels))
        x[:, 0] = 1.0
        status = f"fallback: {result.message}"
    else:
        x = np.clip(result.x.reshape(classes, levels), 0.0, 1.0) + 0.0  # no -0.0
        x /= x.sum(axis=1, keepdims=True)
        status = "optimal"
    rows_array = np.repeat(x, len(terms), axis=0) if form == "global" else x
    rows = {t.name: tuple(float(v) for v in rows_array[i]) for i, t in enumerate(terms)}
    return Solution(
        rows=rows,
        expected_carbon_g=float((weights[:, None] * carbon * x).sum()),
        expected_quality=float((weights[:, None] * quality * x).sum()),
        quality_floor=floor,
        baseline_quality=baseline_quality,
        baseline_carbon_g=baseline_carbon,
        tolerance_used=xi * scale,
        solve_ms=(time.perf_counter() - started) * 1000.0,
        status=status,
    )


def carbon_per_request_g(
    energy_j: float, time_s: float, ci_g_per_kwh: float, *, pue: float = 1.0,
    embodied_g_per_s: float = 0.0,
) -> float:
    """Operational (J -> kWh x CI x PUE) plus embodied (device grams per second of use)."""
    return energy_j / 3.6e6 * ci_g_per_kwh * pue + embodied_g_per_s * time_s
