"""The LP on hand-solvable cases, the Allocation, quality scores, the classifier."""

from __future__ import annotations

import random

import pytest

from proxy.classify.classifier import CLASSES, classify
from proxy.optimiser.allocation import Allocation, AllocationHolder
from proxy.optimiser.lp import ClassTerms, carbon_per_request_g, solve, tolerance_scale
from proxy.optimiser.quality import VerdictCounts

LEVELS = ("L0", "L1", "L2")


def test_floor_binding_two_levels_by_hand() -> None:
    # q0 = 0.6, q1 = 0.4; carbon 10 vs 2. xi = 0.1 at the dirtiest hour: floor = 0.54.
    # 0.6 (1 - x1) + 0.4 x1 = 0.54  ->  x1 = 0.3; carbon = 10 * 0.7 + 2 * 0.3 = 7.6.
    terms = [ClassTerms("a", 1.0, (10.0, 2.0), (0.6, 0.4))]
    solution = solve(terms, xi=0.1, ci=500, ci_min=100, ci_max=500)
    assert solution.rows["a"] == pytest.approx((0.7, 0.3), abs=1e-6)
    assert solution.expected_carbon_g == pytest.approx(7.6)
    assert solution.quality_floor == pytest.approx(0.54)
    assert solution.status == "optimal"


def test_floor_slack_when_the_cheap_level_is_also_the_best() -> None:
    terms = [ClassTerms("mc", 1.0, (10.0, 3.0, 1.0), (0.2, 0.3, 0.5))]
    solution = solve(terms, xi=0.0, ci=300, ci_min=100, ci_max=500)
    assert solution.rows["mc"] == pytest.approx((0.0, 0.0, 1.0))
    assert solution.expected_quality > solution.quality_floor


def test_xi_zero_or_clean_grid_keeps_the_baseline_quality() -> None:
    terms = [ClassTerms("a", 1.0, (10.0, 1.0), (0.7, 0.3))]
    for xi, ci in [(0.0, 500.0), (0.1, 100.0)]:  # no tolerance, or the cleanest hour
        row = solve(terms, xi=xi, ci=ci, ci_min=100, ci_max=500).rows["a"]
        assert row == pytest.approx((1.0, 0.0), abs=1e-9)


def test_per_class_never_worse_than_global_and_uses_class_differences() -> None:
    terms = [ClassTerms("a", 0.5, (10, 3, 2), (0.56, 0.25, 0.19)),
             ClassTerms("b", 0.5, (10, 2, 1), (0.26, 0.38, 0.36))]
    common = {"xi": 0.1, "ci": 300.0, "ci_min": 100.0, "ci_max": 500.0}
    one = solve(terms, form="global", **common)
    per = solve(terms, form="per_class", **common)
    assert one.rows["a"] == one.rows["b"]
    assert per.expected_carbon_g < one.expected_carbon_g
    assert per.expected_quality >= per.quality_floor - 1e-9
    assert per.rows["b"][2] == pytest.approx(1.0)  # b is best served very briefly anyway


def test_degenerate_inputs() -> None:
    assert tolerance_scale(300, 200, 200) == 0.0  # no spread observed yet
    assert tolerance_scale(50, 100, 200) == 0.0 and tolerance_scale(900, 100, 200) == 1.0
    with pytest.raises(ValueError, match="no classes"):
        solve([], xi=0.1, ci=1, ci_min=0, ci_max=2)
    with pytest.raises(ValueError, match="shares"):
        solve([ClassTerms("a", 0.0, (1.0,), (1.0,))], xi=0.1, ci=1, ci_min=0, ci_max=2)
    zero_quality = solve([ClassTerms("a", 1.0, (5.0, 1.0), (0.0, 0.0))], xi=0.1, ci=1,
                         ci_min=0, ci_max=2)
    assert zero_quality.rows["a"] == pytest.approx((0.0, 1.0))
    assert carbon_per_request_g(3.6e6, 10, 100, pue=1.5, embodied_g_per_s=0.01) == 150.1


def test_allocation_draw_is_a_lookup_and_one_uniform() -> None:
    allocation = Allocation(LEVELS, {"x": (0.5, 0.25, 0.25)}, (1.0, 0.0, 0.0), "test")
    assert [allocation.draw("x", u) for u in (0.0, 0.49, 0.5, 0.74, 0.75, 0.999)] == [
        "L0", "L0", "L1", "L1", "L2", "L2"]
    assert allocation.draw("unknown class", 0.99) == "L0"
    rng = random.Random(1)
    draws = [allocation.draw("x", rng.random()) for _ in range(20000)]
    assert draws.count("L1") / len(draws) == pytest.approx(0.25, abs=0.02)
    with pytest.raises(ValueError, match="distribution"):
        Allocation(LEVELS, {"bad": (0.5, 0.6, 0.0)}, (1.0, 0.0, 0.0), "bad")
    holder = AllocationHolder(Allocation.always(LEVELS, "L0", "cold start"))
    holder.publish(Allocation.always(LEVELS, "L2", "test"))
    assert holder.current.draw("x", 0.3) == "L2"


def test_quality_scores_shrink_sparse_classes_and_bound_uncertain_levels() -> None:
    counts = VerdictCounts(("big", "tiny", "none"), 3)
    for _ in range(600):
        counts.add("big", 0)
    for _ in range(400):
        counts.add("big", 2)
    counts.add("tiny", 1)
    scores = counts.scores(prior_strength=20)
    assert scores["none"] == pytest.approx(counts.global_scores())
    assert scores["big"][0] == pytest.approx((600 + 20 * 600 / 1001) / 1020)
    assert scores["tiny"][1] > counts.global_scores()[1]
    bounded = counts.scores(prior_strength=20, lower_bound_z=2)
    assert bounded["big"][0] == scores["big"][0]  # the baseline is never lowered
    assert bounded["tiny"][1] < scores["tiny"][1] and bounded["big"][2] < scores["big"][2]
    counts.decay(24, 0.029)
    assert counts.counts[0, 0] == pytest.approx(600 * 0.4985, rel=1e-3)


@pytest.mark.parametrize(("text", "kind"), [
    ("```python\nprint(1)\n```", "code"),
    ("Which gas is inert?\n(A): neon\n(B): oxygen\n(C): hydrogen", "multiple_choice"),
    ("Tom has 3 apples and buys 5 more. How many apples does he have?", "quantitative"),
    ("who wrote the iliad", "short_question"),
    ("Write a poem about the sea.", "generate"),
    ("Name three primary colours.", "instruction"),
    ("The cat sat on the mat", "open"),
])
def test_classifier_kinds(text: str, kind: str) -> None:
    task_class = classify(text)
    assert task_class in CLASSES and task_class.startswith(kind + "/")


def test_classifier_length_buckets() -> None:
    assert classify("Write a poem.").endswith("/xs")
    assert classify("Write " + "very " * 40 + "long poem.").endswith("/m")
    assert classify("Write " + "word " * 200).endswith("/l")
