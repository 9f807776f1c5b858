"""EnergyAccountant with a scripted meter and clock: settlement order, methods, no row lost."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from proxy.accounting.record import LedgerRow
from proxy.energy.accountant import EnergyAccountant
from proxy.energy.base import Availability, EnergyMeter, EnergySample, MeterUnavailable
from proxy.energy.estimate import HardwareProfile

PROFILE = HardwareProfile("test", active_w=100.0, idle_w=0.0, j_per_input_token=0,
                          j_per_output_token=0, source="test")


class ScriptedMeter(EnergyMeter):
    """Cumulative joules per read; None means the meter fails that read."""

    name = "scripted"

    def __init__(self, readings: list[float | None]) -> None:
        self._readings = iter(readings)

    def availability(self) -> Availability:
        return Availability(True, "scripted")

    async def read(self) -> EnergySample:
        value = next(self._readings)
        if value is None:
            raise MeterUnavailable("scripted gap")
        return EnergySample(value, 0.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _row(request_id: str, prompt: int = 10, completion: int = 10) -> LedgerRow:
    return LedgerRow(request_id=request_id, created_at=datetime.now(UTC), endpoint="chat",
                     prompt_tokens=prompt, completion_tokens=completion)


def test_windows_close_only_when_every_overlapping_request_has_finished() -> None:
    clock = Clock()
    settled: list[tuple[str, float, str]] = []
    accountant = EnergyAccountant(
        ScriptedMeter([0.0, 100.0, 300.0, 400.0]), PROFILE,
        lambda row, joules, busy, method: settled.append((row.request_id, joules, method)),
        clock=clock)

    async def scenario() -> None:
        await accountant.tick()  # t=0
        a, b = _row("a"), _row("b", completion=0)
        clock.now = 0.5
        accountant.begin(a)
        clock.now = 1.0
        await accountant.tick()  # window [0,1): 100 J, only a
        clock.now = 1.5
        accountant.begin(b)
        clock.now = 1.8
        accountant.finish(a)
        clock.now = 2.0
        await accountant.tick()  # window [1,2): 200 J, a and b; b still running: stays open
        assert settled == []
        clock.now = 2.5
        accountant.finish(b)
        clock.now = 3.0
        await accountant.tick()  # window [2,3): 100 J, b only; everything closes

    asyncio.run(scenario())
    by_id = {request_id: (joules, method) for request_id, joules, method in settled}
    assert set(by_id) == {"a", "b"}
    assert by_id["a"][1] == by_id["b"][1] == "apportioned"
    assert by_id["a"][0] + by_id["b"][0] == pytest.approx(400.0)
    assert accountant.stats.attributed_j == pytest.approx(400.0)
    # window [1,2): a's weight (10 + 40) * 0.8/1.3, b's weight 10 * 0.5/1.0
    a_share = 50 * 0.8 / 1.3
    assert by_id["a"][0] == pytest.approx(100 + 200 * a_share / (a_share + 5.0))


def test_a_meter_gap_is_estimated_and_labelled() -> None:
    clock = Clock()
    settled: list[tuple[str, float, str]] = []
    accountant = EnergyAccountant(
        ScriptedMeter([0.0, None, None, 50.0]), PROFILE,
        lambda row, joules, busy, method: settled.append((row.request_id, joules, method)),
        clock=clock)

    async def scenario() -> None:
        await accountant.tick()
        row = _row("x")
        accountant.begin(row)
        clock.now = 1.0
        await accountant.tick()  # reading failed: the window is estimated (100 W x 1 s)
        accountant.finish(row)
        clock.now = 30.0  # past the retry delay
        await accountant.tick()

    asyncio.run(scenario())
    assert settled[0][2] == "estimated" and settled[0][1] == pytest.approx(100.0)


def test_shutdown_settles_rows_still_open() -> None:
    clock = Clock()
    settled: list[str] = []
    accountant = EnergyAccountant(ScriptedMeter([0.0, 10.0, 20.0, 30.0]), PROFILE,
                                  lambda row, *_: settled.append(row.request_id), clock=clock)

    async def scenario() -> None:
        await accountant.tick()
        accountant.begin(_row("running"))
        never_begun = _row("rejected")
        accountant.finish(never_begun)  # rejected before reaching the pool: settled at once
        clock.now = 1.0
        await accountant.tick()
        await accountant.aclose()

    asyncio.run(scenario())
    assert settled == ["rejected", "running"]
