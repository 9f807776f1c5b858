"""Hourly grid intensity from recorded readings: nearest, else older, else current."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from proxy.carbon.base import CIReading
from proxy.carbon.history import hourly_values

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
CURRENT = CIReading(400.0, NOW, "live")


def reading(minutes_ago: float, g_per_kwh: float) -> CIReading:
    return CIReading(g_per_kwh, NOW - timedelta(minutes=minutes_ago), "recorded")


def values(*readings: CIReading, hours: int = 2) -> tuple[float, ...]:
    ordered = sorted(readings, key=lambda r: r.at)  # as CIHistory.readings returns them
    return hourly_values(ordered, NOW, CURRENT, hours)


def test_each_hour_takes_the_nearest_reading_within_half_an_hour() -> None:
    assert values(reading(140, 90.0), reading(110, 100.0), reading(65, 200.0),
                  reading(50, 210.0), reading(5, 390.0)) == (100.0, 200.0, 400.0)


def test_a_reading_just_after_the_hour_counts_as_near() -> None:
    assert values(reading(121, 50.0), reading(95, 60.0), reading(40, 70.0)) == (
        50.0, 70.0, 400.0)


def test_exactly_half_an_hour_away_is_still_near() -> None:
    assert values(reading(150, 11.0), reading(30, 22.0)) == (11.0, 22.0, 400.0)


def test_without_a_near_reading_the_newest_older_one_is_used() -> None:
    # 2 h ago: nothing within 30 min (151 min ago is 31 min off); the newest reading before
    # it is 85. 1 h ago: nothing within 30 min either; the newest before it is still 85.
    assert values(reading(200, 70.0), reading(165, 80.0), reading(151, 85.0),
                  reading(10, 300.0)) == (85.0, 85.0, 400.0)


def test_without_any_older_reading_the_current_value_is_used() -> None:
    assert values() == (400.0, 400.0, 400.0)
    # Only a recent reading, far from both hours and newer than both.
    assert values(reading(10, 300.0)) == (400.0, 400.0, 400.0)


def test_the_last_value_is_always_the_current_one() -> None:
    assert values(reading(0, 123.0), reading(120, 1.0), reading(60, 2.0))[-1] == 400.0


def test_more_hours_back() -> None:
    assert values(reading(240, 4.0), reading(180, 3.0), reading(119, 2.0),
                  reading(61, 1.0), hours=4) == (4.0, 3.0, 2.0, 1.0, 400.0)
    assert len(values(hours=6)) == 7
