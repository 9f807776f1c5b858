"""The joint directive + placement LP: placement by cost, capacity rows, agreement with Sprout's."""

from __future__ import annotations

import pytest

from proxy.optimiser.joint import JointTerms, PoolCapacity, solve_joint
from proxy.optimiser.lp import ClassTerms, solve

# Two levels (L0, L2) x two pools (m1, a100): short answers are cheaper on the M1, long on the
# A100, and L2 is cheaper than L0 everywhere.
SHORT = JointTerms("short", 0.5, quality=(0.6, 0.4),
                   carbon_g=((1.0, 2.0), (0.5, 1.5)), busy_s=((10.0, 1.0), (5.0, 0.5)))
LONG = JointTerms("long", 0.5, quality=(0.9, 0.1),
                  carbon_g=((20.0, 10.0), (8.0, 4.0)), busy_s=((100.0, 8.0), (40.0, 3.0)))
ROOMY = [PoolCapacity("m1", slots=100.0), PoolCapacity("a100", slots=100.0)]
CLEAN = {"xi": 0.1, "ci": 100.0, "ci_min": 100.0, "ci_max": 400.0}  # s = 0: no quality traded
DIRTY = {"xi": 0.5, "ci": 400.0, "ci_min": 100.0, "ci_max": 400.0}


def test_each_class_goes_to_its_cheapest_pool_at_full_quality() -> None:
    solution = solve_joint([SHORT, LONG], ROOMY, rate_per_s=1.0, **CLEAN)
    assert solution.status == "optimal"
    assert solution.placement["short"][0] == pytest.approx((1.0, 0.0))  # L0 on the M1
    assert solution.placement["long"][0] == pytest.approx((0.0, 1.0))  # L0 on the A100
    assert solution.expected_quality == pytest.approx(solution.baseline_quality)
    assert solution.expected_carbon_g == pytest.approx(0.5 * 1.0 + 0.5 * 10.0)


def test_a_dirty_grid_trades_quality_for_shorter_answers_where_it_is_cheapest() -> None:
    solution = solve_joint([SHORT, LONG], ROOMY, rate_per_s=1.0, **DIRTY)
    assert solution.expected_quality == pytest.approx(solution.quality_floor, abs=1e-9)
    assert solution.expected_carbon_g < 5.5
    assert sum(solution.levels["long"]) == pytest.approx(1.0)


def test_capacity_rows_bound_each_pools_utilisation() -> None:
    tight = [PoolCapacity("m1", slots=2.0, max_utilisation=0.5), PoolCapacity("a100", 100.0)]
    solution = solve_joint([SHORT, LONG], tight, rate_per_s=1.0, **CLEAN)
    # Sending all short requests to the M1 would need 0.5 x 10 s = 5 busy-seconds per second.
    assert solution.utilisation["m1"] == pytest.approx(0.5)
    assert 0 < solution.placement["short"][0][0] < 1
    overloaded = solve_joint([SHORT, LONG], [PoolCapacity("m1", 0.1), PoolCapacity("a100", 0.1)],
                             rate_per_s=1.0, **CLEAN)
    assert overloaded.status.startswith("optimal without capacity")


def test_one_pool_reduces_to_the_sprout_per_class_lp() -> None:
    terms = [JointTerms(t.name, t.share, t.quality, tuple((row[1],) for row in t.carbon_g),
                        tuple((row[1],) for row in t.busy_s)) for t in (SHORT, LONG)]
    joint = solve_joint(terms, [PoolCapacity("a100", 100.0)], rate_per_s=1.0, **DIRTY)
    sprout = solve([ClassTerms(t.name, t.share, tuple(c[0] for c in t.carbon_g), t.quality)
                    for t in terms], form="per_class", **DIRTY)
    assert joint.expected_carbon_g == pytest.approx(sprout.expected_carbon_g)
    assert joint.levels["long"] == pytest.approx(sprout.rows["long"])
    with pytest.raises(ValueError):
        solve_joint([SHORT], [PoolCapacity("only", 1.0)], rate_per_s=1.0, **CLEAN)


def test_allocation_pool_weights_for_the_router() -> None:
    from proxy.optimiser.allocation import Allocation

    allocation = Allocation(("L0", "L2"), {}, (1.0, 0.0), "test", ("m1", "a100"),
                            {"*": ((0.25, 0.25), (0.0, 0.0)), "code": ((0.0, 1.0), (0.0, 0.0))})
    assert allocation.pool_weights("chat", "L0") == (("m1", "a100"), (0.5, 0.5))
    assert allocation.pool_weights("code", "L0") == (("m1", "a100"), (0.0, 1.0))
    assert allocation.pool_weights("chat", "L2") is None  # never served there: no plan
    assert allocation.pool_weights("chat", "off") is None
