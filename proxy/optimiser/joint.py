"""Joint directive and placement LP (pure), solved with scipy's HiGHS.

x[c, l, p] is the share of class c served at level l on pool p:

    minimise    sum_c share_c * sum_{l,p} x[c, l, p] * carbon_g[c, l, p]
    subject to  sum_c share_c * sum_{l,p} q[c, l] * x[c, l, p]  >=  (1 - xi * s) * q0
                sum_{l,p} x[c, l, p] = 1                                   for every class c
                rate * sum_c share_c * sum_l x[c, l, p] * busy_s[c, l, p]  <=  slots_p * u_max
                0 <= x <= 1

The quality floor is the Sprout LP's (proxy/optimiser/lp.py); the capacity rows say that the
busy-seconds per second sent to a pool (Little's law: arrivals x time in service) stay within
its concurrent slots at a target utilisation. Pools serve the same model, so quality depends on
the level only. If the capacity rows make the LP infeasible (more traffic than all pools can
take) they are dropped and the status says so; the directive part is still optimal then.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.optimize import linprog

from proxy.optimiser.lp import tolerance_scale


@dataclasses.dataclass(frozen=True, slots=True)
class JointTerms:
    """One class: traffic share, quality per level, and per (level, pool) carbon and time."""

    name: str
    share: float
    quality: tuple[float, ...]  # per level
    carbon_g: tuple[tuple[float, ...], ...]  # [level][pool]
    busy_s: tuple[tuple[float, ...], ...]  # [level][pool]


@dataclasses.dataclass(frozen=True, slots=True)
class PoolCapacity:
    """A pool's concurrent slots; `max_utilisation` leaves headroom for bursts."""

    name: str
    slots: float
    max_utilisation: float = 0.8


@dataclasses.dataclass(frozen=True, slots=True)
class JointSolution:
    """x per class as {level index: {pool name: probability}}, level marginals and figures."""

    placement: dict[str, tuple[tuple[float, ...], ...]]  # [class] -> [level][pool]
    levels: dict[str, tuple[float, ...]]  # [class] -> marginal over levels
    pools: tuple[str, ...]
    expected_carbon_g: float
    expected_quality: float
    quality_floor: float
    baseline_quality: float
    baseline_carbon_g: float  # every class at the baseline level on its cheapest pool
    tolerance_used: float
    utilisation: dict[str, float]
    solve_ms: float
    status: str


def solve_joint(terms: Sequence[JointTerms], capacities: Sequence[PoolCapacity], *,
                rate_per_s: float, xi: float, ci: float, ci_min: float,
                ci_max: float) -> JointSolution:
    """Solve the joint LP; raises ValueError on inconsistent shapes."""
    started = time.perf_counter()
    if not terms or not capacities:
        raise ValueError("need at least one class and one pool")
    classes, levels, pools = len(terms), len(terms[0].quality), len(capacities)
    carbon = np.array([t.carbon_g for t in terms], dtype=float)
    busy = np.array([t.busy_s for t in terms], dtype=float)
    quality = np.array([t.quality for t in terms], dtype=float)
    if carbon.shape != (classes, levels, pools) or busy.shape != carbon.shape:
        raise ValueError("carbon_g and busy_s need one value per level and pool for each class")
    total = sum(t.share for t in terms)
    if total <= 0:
        raise ValueError("class shares sum to zero")
    share = np.array([t.share / total for t in terms])
    baseline_quality = float(share @ quality[:, 0])
    tolerance = xi * tolerance_scale(ci, ci_min, ci_max)
    floor = (1.0 - tolerance) * baseline_quality

    objective = (share[:, None, None] * carbon).ravel()
    quality_row = -(share[:, None, None] * np.repeat(quality[:, :, None], pools, 2)).ravel()
    equalities = np.kron(np.eye(classes), np.ones(levels * pools))
    capacity_rows = np.zeros((pools, classes * levels * pools))
    for p in range(pools):
        mask = np.zeros((classes, levels, pools))
        mask[:, :, p] = 1.0
        capacity_rows[p] = (rate_per_s * share[:, None, None] * busy * mask).ravel()
    limits = [c.slots * c.max_utilisation for c in capacities]

    def run(with_capacity: bool) -> Any:
        a_ub = quality_row[None, :]
        b_ub = [-floor + 1e-12]
        if with_capacity:
            a_ub, b_ub = np.vstack([a_ub, capacity_rows]), [*b_ub, *limits]
        return linprog(objective, A_ub=a_ub, b_ub=b_ub, A_eq=equalities,
                       b_eq=np.ones(classes), bounds=(0.0, 1.0), method="highs")

    result = run(True)
    status = "optimal"
    if result.status == 2:  # infeasible: more traffic than the pools can take
        result = run(False)
        status = "optimal without capacity limits (traffic exceeds every pool's slots)"
    if result.status != 0:
        x = np.zeros((classes, levels, pools))
        x[:, 0, int(np.argmin(carbon[:, 0, :].mean(axis=0)))] = 1.0
        status = f"fallback: {result.message}"
    else:
        x = np.clip(result.x.reshape(classes, levels, pools), 0.0, 1.0) + 0.0
        x /= x.sum(axis=(1, 2), keepdims=True)
    utilisation = {
        c.name: float(rate_per_s * (share[:, None] * (x[:, :, p] * busy[:, :, p])).sum()
                      / c.slots) for p, c in enumerate(capacities)}
    return JointSolution(
        placement={t.name: tuple(tuple(float(v) for v in x[i, k]) for k in range(levels))
                   for i, t in enumerate(terms)},
        levels={t.name: tuple(float(v) for v in x[i].sum(axis=1)) for i, t in enumerate(terms)},
        pools=tuple(c.name for c in capacities),
        expected_carbon_g=float((share[:, None, None] * carbon * x).sum()),
        expected_quality=float((share[:, None] * quality * x.sum(axis=2)).sum()),
        quality_floor=floor,
        baseline_quality=baseline_quality,
        baseline_carbon_g=float(share @ carbon[:, 0, :].min(axis=1)),
        tolerance_used=tolerance,
        utilisation=utilisation,
        solve_ms=(time.perf_counter() - started) * 1000.0,
        status=status,
    )
