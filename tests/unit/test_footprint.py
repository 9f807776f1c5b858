"""Carbon maths: operational and embodied grams on a row."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from proxy.accounting.footprint import fill
from proxy.accounting.record import LedgerRow
from proxy.carbon.base import CIReading
from proxy.carbon.embodied import DEVICES, embodied_g_per_s, operational_g


def test_operational_and_embodied_grams() -> None:
    assert operational_g(3.6e6, 250.0, 1.2) == pytest.approx(300.0)  # 1 kWh
    per_s = embodied_g_per_s(DEVICES["sprout-server"].kg_co2e, 5)
    assert per_s == pytest.approx(1.6715e-4, rel=1e-3)  # Sprout's 26,356.568 g over 5 years
    row = LedgerRow(request_id="r", created_at=datetime.now(UTC), endpoint="chat")
    reading = CIReading(400.0, datetime.now(UTC), "electricitymaps:DE:direct")
    row = fill(row, energy_j=1800.0, busy_s=2.0, method="apportioned", reading=reading,
               pue=1.5, embodied_g_per_s=per_s)
    assert row.energy_j == 1800.0 and row.energy_method == "apportioned"
    assert row.operational_g_co2e == pytest.approx(1800 / 3.6e6 * 400 * 1.5)
    assert row.embodied_g_co2e == pytest.approx(2.0 * per_s)
    assert (row.ci_g_per_kwh, row.ci_source, row.pue) == (400.0, reading.source, 1.5)


def test_a_request_that_never_reached_a_device_has_no_footprint() -> None:
    row = LedgerRow(request_id="r", created_at=datetime.now(UTC), endpoint="chat")
    row = fill(row, energy_j=0.0, busy_s=0.0, method="none",
               reading=CIReading(1.0, datetime.now(UTC), "x"), pue=1.0, embodied_g_per_s=1.0)
    assert row.energy_j is None and row.operational_g_co2e is None


def test_every_embodied_default_states_scope_and_source() -> None:
    for device in DEVICES.values():
        assert device.scope and device.source and device.lifetime_years > 0


def test_profiles_cover_the_device_classes_and_scale_with_model_size() -> None:
    from proxy.energy.estimate import PROFILES

    for name in ["a100", "h100", "v100", "t4", "rtx-6000-ada", "m1", "m1-pro", "cpu"]:
        assert PROFILES[name].source and PROFILES[name].active_w > 0
    a100 = PROFILES["a100"]
    assert a100.predict_j(100, 100, params_b=7) == pytest.approx(a100.predict_j(100, 100))
    assert a100.predict_j(0, 100, params_b=13) / a100.predict_j(0, 100, params_b=7) == (
        pytest.approx((13 / 7) ** 0.894))
