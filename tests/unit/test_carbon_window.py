"""Intensity providers (static, trace replay) and causal trailing statistics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from proxy.carbon.base import CIReading
from proxy.carbon.static import StaticProvider
from proxy.carbon.trace import TraceProvider
from proxy.carbon.window import trailing_stats

HEADER = ("Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO\u2082eq/kWh (direct),"
          "Carbon Intensity gCO\u2082eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,"
          "Data Source,Data Estimated,Data Estimation Method\n")


def _trace(tmp_path: Path, hours: int = 48) -> Path:
    path = tmp_path / "ZZ_2023_hourly.csv"
    lines = [f"2023-01-01 {h:02d}:00:00,X,Zone,ZZ,{100 + h},{200 + h},1,1,src,false,\n"
             for h in range(hours)]
    path.write_text(HEADER + "".join(lines), encoding="utf-8")
    return path


def test_trace_replays_the_same_hour_of_year_now(tmp_path: Path) -> None:
    provider = TraceProvider(_trace(tmp_path))
    now = datetime(2026, 1, 1, 5, 30, tzinfo=UTC)
    reading = asyncio.run(provider.current(now))
    assert reading.g_per_kwh == 105 and reading.source == "trace:ZZ"
    lca = TraceProvider(_trace(tmp_path), column="LCA")
    assert asyncio.run(lca.current(now)).g_per_kwh == 205
    history = asyncio.run(provider.history(now - timedelta(hours=3), now))
    assert [r.g_per_kwh for r in history] == [103, 104, 105]
    assert all(r.at <= now for r in history)


def test_static_provider_labels_itself() -> None:
    reading = asyncio.run(StaticProvider(250).current(datetime.now(UTC)))
    assert reading.g_per_kwh == 250 and reading.source == "static"


def test_trailing_stats_never_look_ahead() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    readings = [CIReading(v, now + timedelta(hours=h), "t") for h, v in
                [(-800, 1.0), (-10, 100.0), (-5, 300.0), (0, 200.0), (1, 999.0), (24, 5.0)]]
    stats = trailing_stats(readings, now, timedelta(days=30), CIReading(200.0, now, "t"))
    assert (stats.min_g_per_kwh, stats.max_g_per_kwh) == (100.0, 300.0)  # no future, no stale
    assert stats.mean_g_per_kwh == 200.0 and stats.readings == 4
    alone = trailing_stats([], now, timedelta(days=30), CIReading(42.0, now, "t"))
    assert (alone.min_g_per_kwh, alone.max_g_per_kwh) == (42.0, 42.0)


def test_trace_offset_shifts_the_replay(tmp_path: Path) -> None:
    provider = TraceProvider(_trace(tmp_path), offset_hours=10)
    now = datetime(2026, 1, 1, 5, 0, tzinfo=UTC)
    assert asyncio.run(provider.current(now)).g_per_kwh == 115  # hour 15 of the trace
