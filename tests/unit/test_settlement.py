"""Settlement on a real (SQLite) ledger: conservation, the horizon, resets, unmetered devices."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, func, insert, select, update

from proxy.accounting.db import make_engine
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.provisional import PoolAccounts
from proxy.accounting.record import LedgerRow
from proxy.accounting.settlement import Settlement, SettlementConfig
from proxy.accounting.tables import energy_devices, energy_samples, energy_windows, replicas
from proxy.accounting.tables import requests as requests_table
from proxy.energy.estimate import HardwareProfile

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PROFILE = HardwareProfile("test-gpu", active_w=200.0, idle_w=10.0, j_per_input_token=0.5,
                          j_per_output_token=2.0, source="test figures")
EMBODIED_G_PER_S = 0.01
POOLS = {"p": PoolAccounts(profile=PROFILE, params_b=None, region=None, pue=1.2,
                           embodied_g_per_s=EMBODIED_G_PER_S)}
CI_G_PER_KWH = 300.0
PUE = 1.2
# Cumulative counter of device gpu0: a sample every 10 s from NOW-100 s to NOW-10 s.
SAMPLE_TIMES = list(range(-100, 0, 10))
DELTAS_J = [300.0, 250.0, 400.0, 100.0, 500.0, 320.0, 0.0, 210.0, 330.0]


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "template.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture
def engine(template_db: Path, tmp_path: Path) -> Iterator[Engine]:
    path = tmp_path / "t.db"
    shutil.copy(template_db, path)
    engine = make_engine(f"sqlite:///{path}")
    yield engine
    engine.dispose()


def add_row(engine: Engine, request_id: str, served_s: float, ended_s: float, *,
            device: str = "gpu0", pool: str | None = "p", prompt_tokens: int = 10,
            completion_tokens: int = 20, energy_j: float = 123.0,
            operational_g_co2e: float = 0.5, backend_url: str | None = None) -> None:
    row = LedgerRow(
        request_id=request_id, created_at=at(served_s - 0.1), endpoint="chat", pool=pool,
        backend_url=backend_url, device_id=device, served_at=at(served_s), ended_at=at(ended_s),
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, status="ok",
        http_status=200, energy_j=energy_j, energy_method="provisional",
        ci_g_per_kwh=CI_G_PER_KWH, ci_source="test", pue=PUE,
        operational_g_co2e=operational_g_co2e, embodied_g_co2e=0.1)
    with engine.begin() as connection:
        connection.execute(insert(requests_table).values(**row.as_db_values()))


def add_samples(engine: Engine, device: str, samples: list[tuple[float, float]]) -> None:
    with engine.begin() as connection:
        connection.execute(insert(energy_samples), [
            {"device_id": device, "sampled_at": at(t), "energy_j": joules, "meter": "test"}
            for t, joules in samples])


def counter(start_j: float = 5_000.0) -> list[tuple[float, float]]:
    values = [start_j]
    for delta in DELTAS_J:
        values.append(values[-1] + delta)
    return list(zip(SAMPLE_TIMES, values, strict=True))


def add_replica(engine: Engine, replica_id: str, *, heartbeat_s: float = 0.0,
                in_flight: dict[str, float] | None = None,
                pending_since_s: float | None = None) -> None:
    with engine.begin() as connection:
        connection.execute(insert(replicas).values(
            replica_id=replica_id, host="host", pid=1, started_at=at(-1_000),
            heartbeat_at=at(heartbeat_s),
            in_flight_json=json.dumps({pool: at(s).isoformat()
                                       for pool, s in (in_flight or {}).items()}),
            pending_since=at(pending_since_s) if pending_since_s is not None else None))


def settle(engine: Engine, now: datetime = NOW, **config: Any) -> Settlement:
    settlement = Settlement(engine, POOLS, SettlementConfig(**config),
                            clock=lambda: now)
    settlement.settle()
    return settlement


def rows(engine: Engine) -> dict[str, Any]:
    with engine.connect() as connection:
        return {row.request_id: row for row in connection.execute(select(requests_table))}


def windows(engine: Engine, device: str | None = None) -> list[Any]:
    query = select(energy_windows).order_by(energy_windows.c.window_id)
    if device is not None:
        query = query.where(energy_windows.c.device_id == device)
    with engine.connect() as connection:
        return list(connection.execute(query))


def aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def assert_close(a: float, b: float) -> None:
    assert math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9), (a, b)


def assert_conserved(engine: Engine, device: str, metered_j: float) -> None:
    """Every metered joule went to exactly one row's share or to idle, once."""
    recorded = windows(engine, device)
    total_metered = sum(w.metered_j for w in recorded)
    assert_close(total_metered, metered_j)
    for window in recorded:
        assert_close(window.attributed_j + window.idle_j, window.metered_j)
    shares = sum(row.settled_j or 0.0 for row in rows(engine).values()
                 if row.device_id == device)
    assert_close(shares + sum(w.idle_j for w in recorded), total_metered)
    # Windows never overlap: no joule is counted twice.
    spans = sorted((aware(w.start_at), aware(w.end_at)) for w in recorded)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start


def add_fleet_rows(engine: Engine) -> None:
    """Rows of three replicas (ids and backends differ) on one device."""
    add_row(engine, "a1", -95, -85, backend_url="http://a")  # alone
    add_row(engine, "b1", -70, -50, backend_url="http://b")  # overlaps c1
    add_row(engine, "c1", -60, -40, prompt_tokens=100, completion_tokens=5,
            backend_url="http://c")
    add_row(engine, "a2", -30, -12, backend_url="http://a")  # alone


def test_windows_are_split_among_every_replicas_rows_conserving_joules(engine: Engine) -> None:
    samples = counter()
    add_samples(engine, "gpu0", samples)
    add_fleet_rows(engine)
    settle(engine)

    settled = rows(engine)
    assert {r.energy_method for r in settled.values()} == {"measured", "apportioned"}
    assert settled["a1"].energy_method == "measured"
    assert settled["a2"].energy_method == "measured"
    assert settled["b1"].energy_method == "apportioned"
    assert settled["c1"].energy_method == "apportioned"
    # Alone on the device, a row gets every joule of the windows it touched.
    assert_close(settled["a1"].energy_j, DELTAS_J[0] + DELTAS_J[1])
    assert_close(settled["a2"].energy_j, DELTAS_J[7] + DELTAS_J[8])
    assert all(r.settled_at is not None for r in settled.values())
    assert all(r.energy_j == r.settled_j for r in settled.values())
    final_j = sum(r.energy_j for r in settled.values())
    idle_j = sum(w.idle_j for w in windows(engine))
    assert_close(final_j + idle_j, samples[-1][1] - samples[0][1])
    assert_conserved(engine, "gpu0", samples[-1][1] - samples[0][1])


def test_final_rows_carry_recomputed_carbon(engine: Engine) -> None:
    add_samples(engine, "gpu0", counter())
    add_fleet_rows(engine)
    settle(engine)
    for row in rows(engine).values():
        assert_close(row.operational_g_co2e, row.energy_j / 3.6e6 * CI_G_PER_KWH * PUE)
        assert_close(row.embodied_g_co2e, row.settled_busy_s * EMBODIED_G_PER_S)
        assert row.settled_busy_s > 0


def test_settling_twice_counts_nothing_twice(engine: Engine) -> None:
    samples = counter()
    add_samples(engine, "gpu0", samples)
    add_fleet_rows(engine)
    settle(engine)
    before_rows, before_windows = rows(engine), windows(engine)
    settle(engine)
    assert windows(engine) == before_windows
    assert rows(engine) == before_rows
    # New samples later: the new windows start where the old ones ended.
    later = [(0.0, samples[-1][1] + 70.0), (10.0, samples[-1][1] + 90.0)]
    add_samples(engine, "gpu0", later)
    settle(engine, NOW + timedelta(seconds=20))
    settle(engine, NOW + timedelta(seconds=20))
    recorded = windows(engine)
    assert len(recorded) == len(before_windows) + 1
    assert aware(recorded[-1].start_at) == aware(before_windows[-1].end_at)
    assert_conserved(engine, "gpu0", later[-1][1] - samples[0][1])


def test_a_request_in_flight_on_any_replica_holds_its_windows_open(engine: Engine) -> None:
    samples = counter()
    add_samples(engine, "gpu0", samples)
    add_fleet_rows(engine)
    # Replica B has a request on pool p running since NOW-45 s, its row not written yet.
    add_replica(engine, "B", in_flight={"p": -45})
    settle(engine)

    held = rows(engine)
    assert max(aware(w.end_at) for w in windows(engine)) <= at(-45)
    assert held["a1"].settled_at is not None and held["b1"].settled_at is not None
    for request_id in ("c1", "a2"):  # they end after the held start
        assert held[request_id].settled_at is None
        assert held[request_id].energy_method == "provisional"
        assert held[request_id].energy_j == 123.0
    assert held["c1"].settled_j is not None  # its share so far accumulates on the row

    add_row(engine, "d1", -45, -35, backend_url="http://b")  # the request ends; row written
    with engine.begin() as connection:
        connection.execute(update(replicas).values(in_flight_json="{}"))
    settle(engine)

    final = rows(engine)
    assert all(r.settled_at is not None for r in final.values())
    assert final["d1"].energy_method == "apportioned"  # shares a window with c1
    assert final["c1"].energy_method == "apportioned"
    assert final["a2"].energy_method == "measured"
    assert_conserved(engine, "gpu0", samples[-1][1] - samples[0][1])
    assert_close(sum(r.energy_j for r in final.values())
                 + sum(w.idle_j for w in windows(engine)), samples[-1][1] - samples[0][1])


def test_a_row_not_yet_written_holds_the_horizon_too(engine: Engine) -> None:
    samples = counter()
    add_samples(engine, "gpu0", samples)
    add_fleet_rows(engine)
    add_replica(engine, "B", pending_since_s=-45)
    settle(engine)

    held = rows(engine)
    assert max(aware(w.end_at) for w in windows(engine)) <= at(-45)
    assert held["b1"].settled_at is not None
    assert held["c1"].settled_at is None and held["a2"].settled_at is None

    add_row(engine, "d1", -45, -35)
    with engine.begin() as connection:
        connection.execute(update(replicas).values(pending_since=None))
    settle(engine)
    final = rows(engine)
    assert all(r.settled_at is not None for r in final.values())
    assert final["d1"].energy_method == "apportioned"
    assert_conserved(engine, "gpu0", samples[-1][1] - samples[0][1])


def test_a_silent_replica_holds_nothing(engine: Engine) -> None:
    samples = counter()
    add_samples(engine, "gpu0", samples)
    add_fleet_rows(engine)
    add_replica(engine, "dead", heartbeat_s=-20, in_flight={"p": -95}, pending_since_s=-95)
    settle(engine, replica_timeout_s=15.0)
    assert all(r.settled_at is not None for r in rows(engine).values())
    assert_conserved(engine, "gpu0", samples[-1][1] - samples[0][1])


def test_a_live_replica_on_another_pool_does_not_hold_this_device(engine: Engine) -> None:
    samples = counter()
    add_samples(engine, "gpu0", samples)
    add_fleet_rows(engine)
    add_replica(engine, "B", in_flight={"other-pool": -95})
    settle(engine)
    assert all(r.settled_at is not None for r in rows(engine).values())


def test_max_hold_caps_how_long_a_request_holds_windows(engine: Engine) -> None:
    samples = counter()
    add_samples(engine, "gpu0", samples)
    add_fleet_rows(engine)
    add_replica(engine, "B", in_flight={"p": -80})
    settle(engine, max_hold_s=35.0)

    held = rows(engine)
    # Without the cap nothing after NOW-80 s would close; with it, windows close to NOW-35 s.
    assert max(aware(w.end_at) for w in windows(engine)) == at(-40)
    assert held["c1"].settled_at is not None  # ended at NOW-40 s
    assert held["a2"].settled_at is None

    # The held request's row arrives after its windows closed: it keeps its estimate.
    add_row(engine, "h1", -80, -42, energy_j=777.0, operational_g_co2e=0.7)
    with engine.begin() as connection:
        connection.execute(delete(replicas))
    settle(engine, max_hold_s=35.0)
    final = rows(engine)
    assert all(r.settled_at is not None for r in final.values())
    assert final["h1"].energy_method == "estimated"
    assert final["h1"].energy_j == 777.0
    assert final["h1"].operational_g_co2e == 0.7
    assert_conserved(engine, "gpu0", samples[-1][1] - samples[0][1])


def test_a_counter_reset_gives_an_estimated_window(engine: Engine) -> None:
    add_samples(engine, "gpu1", [(-100, 1_000.0), (-90, 1_500.0), (-80, 2_100.0),
                                 (-70, 40.0), (-60, 400.0), (-50, 900.0)])
    add_row(engine, "m1", -98, -92, device="gpu1")
    add_row(engine, "r1", -78, -72, device="gpu1")  # inside the reset window
    add_row(engine, "m2", -65, -55, device="gpu1")
    settle(engine)

    settled = rows(engine)
    assert settled["m1"].energy_method == "measured"
    assert settled["m2"].energy_method == "measured"
    assert settled["r1"].energy_method == "estimated"
    assert_close(settled["r1"].energy_j, PROFILE.active_w * 6)  # alone, 6 s busy
    assert_close(settled["m1"].energy_j, 500.0)
    (window,) = windows(engine, "gpu1")
    assert window.method == "measured+reset"
    reset_j = PROFILE.active_w * 6 + PROFILE.idle_w * 4
    assert_conserved(engine, "gpu1", 500.0 + 600.0 + reset_j + 360.0 + 500.0)


def test_a_row_spanning_a_reset_stays_estimated_when_it_settles_later(engine: Engine) -> None:
    """Part of its joules were synthesised; a later run must not call them measured."""
    add_samples(engine, "gpu1", [(-100, 1_000.0), (-90, 1_500.0), (-80, 40.0),
                                 (-70, 400.0), (-60, 900.0)])
    add_row(engine, "r2", -85, -55, device="gpu1")  # through the reset, past the last sample
    settle(engine)
    assert rows(engine)["r2"].settled_at is None

    add_samples(engine, "gpu1", [(-50, 1_300.0)])
    settle(engine)
    settled = rows(engine)["r2"]
    assert settled.settled_at is not None
    assert settled.energy_method == "estimated"


def test_a_device_without_samples_is_estimated_from_its_profile(engine: Engine) -> None:
    add_row(engine, "e1", -50, -40, device="cpu0")
    add_row(engine, "e2", -30, -20, device="cpu0")
    add_row(engine, "e3", -25, -15, device="cpu0")
    settle(engine)

    settled = rows(engine)
    assert {r.energy_method for r in settled.values()} == {"estimated"}
    assert_close(settled["e1"].energy_j, PROFILE.active_w * 10)
    assert_close(settled["e2"].energy_j + settled["e3"].energy_j, PROFILE.active_w * 15)
    for row in settled.values():
        assert_close(row.operational_g_co2e, row.energy_j / 3.6e6 * CI_G_PER_KWH * PUE)
    (window,) = windows(engine, "cpu0")
    assert window.method == "estimated"
    horizon_s = -1.0  # NOW minus the default margin
    busy_s = 25.0
    assert_close(window.idle_j, PROFILE.idle_w * (horizon_s - (-50) - busy_s))
    assert_conserved(engine, "cpu0", PROFILE.active_w * busy_s
                     + PROFILE.idle_w * (horizon_s + 50 - busy_s))
    with engine.connect() as connection:
        device = connection.execute(select(energy_devices)).one()
    assert device.device_id == "cpu0" and not device.available

    settle(engine)  # nothing new: nothing counted again
    assert len(windows(engine, "cpu0")) == 1
    assert rows(engine) == settled


def test_rows_that_ended_before_the_first_sample_keep_their_estimate(engine: Engine) -> None:
    samples = counter()
    add_samples(engine, "gpu0", samples)
    add_row(engine, "early", -200, -150, energy_j=42.0, operational_g_co2e=1.25)
    add_row(engine, "a1", -95, -85)
    settle(engine)

    settled = rows(engine)
    assert settled["early"].settled_at is not None
    assert settled["early"].energy_method == "estimated"
    assert settled["early"].energy_j == 42.0
    assert settled["early"].operational_g_co2e == 1.25
    assert settled["a1"].energy_method == "measured"
    assert_conserved(engine, "gpu0", samples[-1][1] - samples[0][1])


def test_windows_per_device_are_independent(engine: Engine) -> None:
    samples = counter()
    add_samples(engine, "gpu0", samples)
    add_samples(engine, "gpu9", [(t, 10.0 * i) for i, (t, _) in enumerate(samples)])
    add_row(engine, "x", -95, -85, device="gpu0")
    add_row(engine, "y", -95, -85, device="gpu9")  # same time, another device: alone there
    settle(engine)
    settled = rows(engine)
    assert settled["x"].energy_method == "measured"
    assert settled["y"].energy_method == "measured"
    assert_close(settled["y"].energy_j, 20.0)
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(energy_windows)).scalar() == 2


def test_rows_of_a_meter_that_went_silent_end_estimated(engine: Engine) -> None:
    # The device's meter answered until -90 s (a pod gone, a meter down), rows came after.
    add_samples(engine, "gpu0", [(-100.0, 1000.0), (-90.0, 3000.0)])
    add_row(engine, "before", -99, -95)
    add_row(engine, "after", -50, -40, energy_j=7.0)
    settle(engine)  # closes the meter's last window
    settle(engine)  # the next run: the meter has been silent 90 s > stale_meter_s

    settled = rows(engine)
    assert settled["before"].energy_method == "measured"
    assert settled["after"].settled_at is not None
    assert (settled["after"].energy_method, settled["after"].energy_j) == ("estimated", 7.0)
    assert_conserved(engine, "gpu0", 2000.0)


def test_a_device_settled_elsewhere_meanwhile_is_not_counted_twice(engine: Engine) -> None:
    samples = counter()
    add_samples(engine, "gpu0", samples)
    add_row(engine, "a1", -95, -85)
    first = settle(engine)
    again = settle(engine)  # a second leader's run over the same state: nothing new
    assert again.stats.windows == 0 and first.stats.windows == 1
    assert len(windows(engine, "gpu0")) == 1
