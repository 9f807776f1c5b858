"""Meters against replayed counter readings, and the attribution rule."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.energy.apple import AppleMeter, parse_powermetrics_mw
from proxy.energy.attribution import Flight, Window, attribute
from proxy.energy.base import Availability, EnergyMeter, EnergySample, MeterUnavailable
from proxy.energy.fakes import ReplayNVML
from proxy.energy.nvml import NVMLMeter
from proxy.energy.rapl import RAPLMeter


def _zone(root: Path, path: str, name: str, energy_uj: int, max_uj: int = 1_000_000) -> Path:
    zone = root / path
    zone.mkdir(parents=True)
    (zone / "name").write_text(name + "\n")
    (zone / "energy_uj").write_text(str(energy_uj))
    (zone / "max_energy_range_uj").write_text(str(max_uj))
    return zone


def test_rapl_sums_package_and_dram_and_handles_wrap_around(tmp_path: Path) -> None:
    package = _zone(tmp_path, "intel-rapl:0", "package-0", 900_000)
    _zone(tmp_path, "intel-rapl:0/intel-rapl:0:0", "core", 5)  # not selected
    dram = _zone(tmp_path, "intel-rapl:0/intel-rapl:0:2", "dram", 100)
    meter = RAPLMeter(tmp_path)
    assert meter.availability().available
    assert asyncio.run(meter.read()).energy_j == 0.0  # the first read sets the baseline
    (package / "energy_uj").write_text("950000")  # +50,000 uJ
    (dram / "energy_uj").write_text("1100")  # +1,000 uJ
    assert asyncio.run(meter.read()).energy_j == pytest.approx(0.051)
    (package / "energy_uj").write_text("20000")  # wrapped: 50,000 to the range + 20,000 after
    assert asyncio.run(meter.read()).energy_j == pytest.approx(0.121)


def test_rapl_permission_denied_and_missing_domains_are_unavailable(tmp_path: Path) -> None:
    assert not RAPLMeter(tmp_path).availability().available
    _zone(tmp_path, "intel-rapl:0", "package-0", 1)

    def kernel_refuses(path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied")
        return path.read_text()

    availability = RAPLMeter(tmp_path, reader=kernel_refuses).availability()
    assert not availability.available and "permission denied" in availability.reason


def test_nvml_counter_devices_sum_joules_since_start() -> None:
    fake = ReplayNVML(energy_mj=[[10_000, 12_000, 15_000], [500, 1_500, 2_500]],
                      power_mw=[[0, 0, 0], [0, 0, 0]])
    meter = NVMLMeter(library=fake)
    assert meter.availability().available
    assert asyncio.run(meter.read()).energy_j == pytest.approx(2.0 + 1.0)
    assert asyncio.run(meter.read()).energy_j == pytest.approx(5.0 + 2.0)


def test_nvml_power_sampling_fallback_for_older_gpus() -> None:
    fake = ReplayNVML(power_mw=[[100_000, 100_000, 300_000]])  # no energy counter
    meter = NVMLMeter(library=fake)
    assert "power sampling" in meter.availability().reason
    first = asyncio.run(meter.read())
    second = asyncio.run(meter.read())
    assert second.energy_j - first.energy_j == pytest.approx(
        (100 + 300) / 2 * (second.at_s - first.at_s), rel=1e-6)


def test_nvml_without_a_driver_is_unavailable_not_an_error() -> None:
    failing = NVMLMeter(library=ReplayNVML(fail_init="Driver Not Loaded"))
    assert failing.availability().reason == "NVML unavailable: Driver Not Loaded"
    with pytest.raises(MeterUnavailable):
        asyncio.run(failing.read())
    real = NVMLMeter()  # the real nvidia-ml-py on a machine without NVIDIA hardware
    assert not real.availability().available


def test_apple_powermetrics_parsing_and_availability_off_macos() -> None:
    sample = ("**** Processor usage ****\nCPU Power: 1523 mW\nGPU Power: 401 mW\n"
              "ANE Power: 0 mW\nCombined Power (CPU + GPU + ANE): 1924 mW\n")
    assert parse_powermetrics_mw(sample) == 1924
    assert parse_powermetrics_mw("CPU Power: 1000 mW\nGPU Power: 250 mW\n") == 1250
    availability = AppleMeter().availability()
    assert not availability.available and "macOS" in availability.reason


def test_alone_is_measured_shared_is_apportioned_idle_is_kept() -> None:
    windows = [Window(0, 1, 100.0), Window(1, 2, 100.0), Window(2, 3, 50.0)]
    flights = [Flight("a", 0.0, 2.0, prefill_tokens=10, decode_tokens=10),
               Flight("b", 1.0, 2.0, prefill_tokens=0, decode_tokens=10)]
    result = attribute(windows, flights, prefill_weight=1, decode_weight=4)
    # Window 1: a alone. Window 2: a's weight (10 + 40) * 1/2 = 25 vs b's 40 * 1/1 = 40.
    assert result.energy_j["a"] == pytest.approx(100 + 100 * 25 / 65)
    assert result.energy_j["b"] == pytest.approx(100 * 40 / 65)
    assert result.idle_j == 50.0 and result.idle_s == 1.0
    assert result.method("a") == result.method("b") == "apportioned"
    alone = attribute([Window(0, 1, 10.0)], [Flight("c", 0.0, 1.0, 5, 5)])
    assert alone.method("c") == "measured" and alone.energy_j["c"] == 10.0
    assert alone.busy_s["c"] == 1.0


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 10), st.floats(0.01, 3), st.floats(0, 500)), min_size=1,
             max_size=8),
    st.lists(st.tuples(st.floats(0, 10), st.floats(0, 5), st.integers(0, 2000),
                       st.integers(0, 2000)), max_size=10),
)
def test_conservation(windows_raw, flights_raw) -> None:  # type: ignore[no-untyped-def]
    windows = [Window(s, s + d, e) for s, d, e in windows_raw]
    flights = [Flight(f"r{i}", s, s + d, p, q) for i, (s, d, p, q) in enumerate(flights_raw)]
    result = attribute(windows, flights)
    metered = sum(w.energy_j for w in windows)
    attributed = sum(result.energy_j.values()) + result.idle_j
    assert attributed == pytest.approx(metered, rel=1e-9, abs=1e-9)
    busy = sum(result.busy_s.values()) + result.idle_s
    assert busy == pytest.approx(sum(w.end_s - w.start_s for w in windows), rel=1e-9, abs=1e-9)


def test_fairness_identical_requests_get_identical_shares() -> None:
    flights = [Flight(f"r{i}", 0.0, 4.0, 20, 30) for i in range(3)]
    result = attribute([Window(0, 2, 90.0), Window(2, 4, 30.0)], flights)
    assert set(round(v, 9) for v in result.energy_j.values()) == {40.0}


class _SaysWhen(EnergyMeter):
    """A meter whose reading names its own read time (as a remote worker's does)."""

    name = "says-when"

    def __init__(self, read_at: datetime | None) -> None:
        self._read_at = read_at

    def availability(self) -> Availability:
        return Availability(True, "")

    async def read(self) -> EnergySample:
        return EnergySample(5.0, 0.0, "dev", self._read_at)


def test_a_reading_is_placed_at_the_time_the_meter_says_within_the_span_asked() -> None:
    from proxy.energy.devices import MeterTarget
    from proxy.energy.sampler import MeterSampler

    asked = datetime(2026, 1, 1, tzinfo=UTC)
    answered = asked + timedelta(milliseconds=200)

    def placed(read_at: datetime | None) -> datetime:
        times = iter([asked, answered])
        sampler = MeterSampler(None, [], None, clock=lambda: next(times))  # type: ignore[arg-type]
        target = MeterTarget("p", "remote", "http://w/metrics/energy", "dev")
        row = asyncio.run(sampler._read(target, _SaysWhen(read_at)))
        assert row is not None
        return row["sampled_at"]  # type: ignore[return-value]

    # A busy worker read late in the span and answered at once: its own time, not the middle.
    assert placed(asked + timedelta(milliseconds=190)) == asked + timedelta(milliseconds=190)
    # Clocks that disagree are held within the span; a meter that says nothing: the midpoint.
    assert placed(asked - timedelta(seconds=5)) == asked
    assert placed(answered + timedelta(seconds=5)) == answered
    assert placed(None) == asked + timedelta(milliseconds=100)
