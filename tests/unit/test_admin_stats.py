"""The carbon-saved counterfactual's ratios."""

from __future__ import annotations

import pytest

from proxy.api.admin.stats import l0_ratio as _l0_ratio


def test_ledger_means_first_then_sprout_ratios() -> None:
    means = {("qa", "L0"): 300.0, ("qa", "L1"): 100.0}
    assert _l0_ratio("qa", "L1", means) == 3.0
    assert _l0_ratio("qa", "L2", means) == pytest.approx(1 / 0.154)  # no L2 data in the class
    assert _l0_ratio("qa", "L0", means) == 1.0
    assert _l0_ratio("qa", "off", means) == 1.0 and _l0_ratio(None, None, means) == 1.0
    assert _l0_ratio("qa", "L7", means) == 1.0  # an operator level without a known ratio
