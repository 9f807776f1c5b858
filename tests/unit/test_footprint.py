"""Carbon maths: operational and embodied grams on a row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from proxy.accounting.provisional import PoolAccounts, ProvisionalAccounts
from proxy.carbon.base import CIReading
from proxy.carbon.embodied import DEVICES, embodied_g_per_s, operational_g
from proxy.energy.estimate import PROFILES


def test_operational_and_embodied_grams() -> None:
    assert operational_g(3.6e6, 250.0, 1.2) == pytest.approx(300.0)  # 1 kWh
    per_s = embodied_g_per_s(DEVICES["sprout-server"].kg_co2e, 5)
    assert per_s == pytest.approx(1.6715e-4, rel=1e-3)  # Sprout's 26,356.568 g over 5 years
    reading = CIReading(400.0, datetime.now(UTC), "electricitymaps:DE:direct")
    profile = PROFILES["a100"]
    accounts = ProvisionalAccounts(
        {"p": PoolAccounts(profile, None, "DE", 1.5, per_s)}, lambda region: reading)
    served = datetime.now(UTC)
    found = accounts.footprint("p", 100, 200, served, served + timedelta(seconds=2))
    assert found is not None
    energy_j = profile.predict_j(100, 200)
    assert found.energy_j == pytest.approx(energy_j) and found.energy_method == "provisional"
    assert found.operational_g_co2e == pytest.approx(energy_j / 3.6e6 * 400 * 1.5)
    assert found.embodied_g_co2e == pytest.approx(2.0 * per_s)
    assert (found.ci_g_per_kwh, found.ci_source, found.pue) == (400.0, reading.source, 1.5)


def test_a_request_that_never_reached_a_device_has_no_footprint() -> None:
    accounts = ProvisionalAccounts({}, lambda region: CIReading(1.0, datetime.now(UTC), "x"))
    assert accounts.footprint(None, 10, 0, None, datetime.now(UTC)) is None


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
