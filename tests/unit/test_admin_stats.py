"""The carbon-saved counterfactual: ledger means only, "not enough data" otherwise."""

from __future__ import annotations

from typing import Any

from proxy.api.admin.stats import MIN_ROWS, Counterfactual, l0_ratio


def test_ratios_come_from_the_ledger_or_not_at_all() -> None:
    means = {("qa", "L0"): 300.0, ("qa", "L1"): 100.0}
    assert l0_ratio("qa", "L1", means) == 3.0
    assert l0_ratio("qa", "L2", means) is None  # no L2 data in the class: no borrowed ratio
    assert l0_ratio("code", "L1", means) is None  # no L0 data in the class
    assert l0_ratio("qa", "L0", means) == 1.0
    assert l0_ratio("qa", "off", means) == 1.0 and l0_ratio(None, None, means) == 1.0
    assert l0_ratio("qa", "exempt", means) == 1.0


def _rows(level: str, count: int, energy_j: float, task_class: str = "qa") -> dict[str, Any]:
    return {"task_class": task_class, "directive_level": level, "energy_j": energy_j * count,
            "metered": count}


def test_a_class_with_too_few_l0_rows_claims_no_saving() -> None:
    # 15 rows, as the example: L0 rows of another class must not stand in.
    rows = [_rows("L0", MIN_ROWS, 900.0, "qa"), _rows("L2", 5, 150.0, "qa"),
            _rows("L0", MIN_ROWS - 1, 900.0, "code"), _rows("L2", 5, 150.0, "code")]
    counterfactual = Counterfactual(rows)
    assert counterfactual.saved_g(rows[1], 1.0) == 5.0  # (900 / 150 - 1) x 1 g
    assert counterfactual.saved_g(rows[3], 1.0) is None
    assert counterfactual.saved_g(rows[2], 1.0) == 0.0
