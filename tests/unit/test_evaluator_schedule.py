"""Sprout's evaluator timing rule: hand-computed traces and the authors' recorded firings."""

from __future__ import annotations

import collections
import csv
from pathlib import Path

import pytest

from evaluator.schedule import ScheduleRule, should_evaluate

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "sprout"


def test_hand_computed_cases() -> None:
    assert should_evaluate(72, (500, 500, 500), 100)  # max idle forces a run
    assert not should_evaluate(6, (300, 200, 250), 1000)  # grace period
    assert not should_evaluate(10, (300, 200, 250), 240)  # dirtier than the reference
    # v(t) = CI * e^{0.029 age}: 300 e^{0.232} = 378.5, 200 e^{0.261} = 259.6,
    # 250 e^{0.290} = 334.1: falling then rising: a local minimum -> run.
    assert should_evaluate(10, (300, 200, 250), 260)
    # 300 -> 250 -> 200: still falling -> wait.
    assert not should_evaluate(10, (300, 250, 200), 260)
    # Flat CI: staleness alone makes v rise, so g_{t-1} > 0 -> no local minimum.
    assert not should_evaluate(10, (200, 200, 200), 260)
    assert should_evaluate(3, (1, 1, 1), 0, ScheduleRule(max_idle_h=3))


@pytest.mark.skipif(not (DATA / "evaluator_reference.csv").exists(),
                    reason="../shared/data/sprout not present")
def test_reproduces_every_firing_the_authors_recorded() -> None:
    recorded: dict[tuple[str, int], list[int]] = collections.defaultdict(list)
    with (DATA / "evaluator_reference.csv").open() as handle:
        for row in csv.DictReader(handle):
            recorded[(row["region"], int(row["season_start_hour"]))].append(
                int(row["hour_in_window"]))
    traces: dict[str, list[float]] = {}
    for path in DATA.glob("*_hourly.csv"):
        with path.open(encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        column = next(c for c in rows[0] if "(direct)" in c)
        traces[rows[0]["Zone Id"]] = [float(r[column]) for r in rows]
    zones = {"US-CAL": "US-CAL-CISO", "US-TEX": "US-TEX-ERCO", "GB": "GB"}
    assert len(recorded) == 9
    for (region, start), hours in recorded.items():
        window = traces[zones[region]][start:start + 720]
        mean = sum(window) / len(window)  # the authors' look-ahead reference
        last, fired = 0, []
        for t in range(1, 720):
            if should_evaluate(t - last, (window[t - 2], window[t - 1], window[t]), mean):
                fired.append(t)
                last = t
        assert fired == hours, (region, start)
