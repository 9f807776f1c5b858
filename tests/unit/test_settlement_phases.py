"""Settlement of disaggregated rows: each phase split from its own device's replayed counter.

A `pd` row is prefilled on device `gpu-new` (pool `new`) and decoded on `gpu-old` (pool
`old`). Both devices' cumulative counters are replayed samples; the ledger is SQLite and
PostgreSQL (the latter through the driver's own cursor paths).
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from proxy.accounting.db import make_engine
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.provisional import PoolAccounts
from proxy.accounting.record import LedgerRow
from proxy.accounting.settlement import Settlement, SettlementConfig
from proxy.accounting.tables import energy_devices, energy_samples, energy_windows, replicas
from proxy.accounting.tables import requests as requests_table
from proxy.carbon.embodied import operational_g
from proxy.energy.estimate import HardwareProfile

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
NEW_PROFILE = HardwareProfile("new-gpu", active_w=300.0, idle_w=50.0, j_per_input_token=0.2,
                              j_per_output_token=1.0, source="test figures")
OLD_PROFILE = HardwareProfile("old-gpu", active_w=120.0, idle_w=20.0, j_per_input_token=0.6,
                              j_per_output_token=2.5, source="test figures")
NEW_G_PER_S, OLD_G_PER_S = 0.02, 0.005  # embodied rates
OLD = PoolAccounts(profile=OLD_PROFILE, params_b=None, region="old-grid", pue=1.2,
                   embodied_g_per_s=OLD_G_PER_S)
POOLS = {"new": PoolAccounts(profile=NEW_PROFILE, params_b=None, region="new-grid", pue=1.1,
                             embodied_g_per_s=NEW_G_PER_S),
         "old": OLD, "pd": dataclasses.replace(OLD, members=("new", "old"))}
DECODE_CI, PREFILL_CI = 300.0, 450.0  # g/kWh: the rows' (decode) grid, the prefill pool's
# The provisional figures a pd row is written with (proxy/serving/exchange.py).
PREFILL_EST_J, PREFILL_EST_OP = 40.0, operational_g(40.0, PREFILL_CI, 1.1)
PREFILL_EST_EMB, DECODE_EST_J, DECODE_EST_EMB = 0.3, 70.0, 0.2
# Counters: a sample every 10 s from NOW-100 s to NOW-10 s; window i is [-100+10i, -90+10i].
TIMES = list(range(-100, 0, 10))
NEW_DELTAS_J = [300.0, 250.0, 400.0, 100.0, 500.0, 320.0, 0.0, 210.0, 330.0]
OLD_DELTAS_J = [120.0, 80.0, 60.0, 90.0, 150.0, 70.0, 40.0, 30.0, 20.0]


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


@pytest.fixture(scope="module")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "template.db"
    upgrade_to_head(f"sqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, template_db: Path, tmp_path: Path
           ) -> Iterator[Engine]:
    if request.param == "sqlite":
        path = tmp_path / "t.db"
        shutil.copy(template_db, path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_url")
        upgrade_to_head(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def add_pd_row(engine: Engine, request_id: str, served_s: float, prefill_end_s: float,
               ended_s: float, *, prompt_tokens: int = 100, completion_tokens: int = 30) -> None:
    """A disaggregated row as serving writes it: both phases provisional, in the totals."""
    decode_op = operational_g(DECODE_EST_J, DECODE_CI, 1.2)
    row = LedgerRow(
        request_id=request_id, created_at=at(served_s - 0.1), endpoint="chat", pool="pd",
        device_id="gpu-old", served_at=at(served_s), ended_at=at(ended_s),
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, status="ok",
        http_status=200, decoding="disaggregated", energy_j=DECODE_EST_J + PREFILL_EST_J,
        energy_method="provisional", ci_g_per_kwh=DECODE_CI, ci_source="test", pue=1.2,
        operational_g_co2e=decode_op + PREFILL_EST_OP,
        embodied_g_co2e=DECODE_EST_EMB + PREFILL_EST_EMB, prefill_pool="new",
        prefill_device_id="gpu-new", prefill_ended_at=at(prefill_end_s),
        kv_transfer_bytes=1000, prefill_energy_j=PREFILL_EST_J,
        prefill_operational_g_co2e=PREFILL_EST_OP, prefill_embodied_g_co2e=PREFILL_EST_EMB,
        prefill_energy_method="provisional")
    _insert(engine, row)


def add_row(engine: Engine, request_id: str, served_s: float, ended_s: float, *, pool: str,
            device: str, prompt_tokens: int = 10, completion_tokens: int = 20,
            served_pool: str | None = None) -> None:
    """A row served whole on one device."""
    row = LedgerRow(
        request_id=request_id, created_at=at(served_s - 0.1), endpoint="chat", pool=pool,
        served_pool=served_pool, device_id=device, served_at=at(served_s), ended_at=at(ended_s),
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, status="ok",
        http_status=200, energy_j=50.0, energy_method="provisional", ci_g_per_kwh=DECODE_CI,
        ci_source="test", pue=1.2, operational_g_co2e=0.01, embodied_g_co2e=0.1)
    _insert(engine, row)


def _insert(engine: Engine, row: LedgerRow) -> None:
    with engine.begin() as connection:
        connection.execute(insert(requests_table).values(**row.as_db_values()))


def add_counter(engine: Engine, device: str, deltas: list[float],
                indices: range | None = None) -> None:
    """The device's cumulative counter at TIMES (only the samples at `indices`, if given)."""
    values = [1_000.0]
    for delta in deltas:
        values.append(values[-1] + delta)
    chosen = indices if indices is not None else range(len(TIMES))
    with engine.begin() as connection:
        connection.execute(insert(energy_samples), [
            {"device_id": device, "sampled_at": at(TIMES[i]), "energy_j": values[i],
             "meter": "test"} for i in chosen])


def settle(engine: Engine, now: datetime = NOW, **config: Any) -> None:
    Settlement(engine, POOLS, SettlementConfig(**config), clock=lambda: now).settle()


def row(engine: Engine, request_id: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(requests_table).where(
            requests_table.c.request_id == request_id)).one()


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def assert_conserved(engine: Engine, device: str, shares_j: float, metered_j: float) -> None:
    """The device's windows: attributed + idle = metered, and the phases hold the attributed."""
    with engine.connect() as connection:
        windows = list(connection.execute(select(energy_windows).where(
            energy_windows.c.device_id == device)))
    assert close(sum(w.metered_j for w in windows), metered_j)
    for window in windows:
        assert close(window.attributed_j + window.idle_j, window.metered_j)
    assert close(sum(w.attributed_j for w in windows), shares_j)


def assert_totals(found: Any) -> None:
    """The row's totals are its two phases' sum."""
    assert close(found.energy_j, found.settled_j + found.prefill_energy_j)
    decode_op = operational_g(found.settled_j, DECODE_CI, 1.2)
    assert close(found.operational_g_co2e, decode_op + found.prefill_operational_g_co2e)


def test_each_phase_is_metered_on_its_own_device(engine: Engine) -> None:
    add_pd_row(engine, "pd1", -90, -70, -30)
    add_counter(engine, "gpu-new", NEW_DELTAS_J)
    add_counter(engine, "gpu-old", OLD_DELTAS_J)
    settle(engine)

    found = row(engine, "pd1")
    # Alone on each device: the prefill phase gets windows [-90, -70] of the new GPU, the
    # decode phase windows [-70, -30] of the old one.
    assert found.prefill_energy_method == "measured" and found.energy_method == "measured"
    assert close(found.prefill_energy_j, 250.0 + 400.0)
    assert close(found.prefill_settled_j, 650.0) and close(found.prefill_settled_busy_s, 20.0)
    assert close(found.settled_j, 90.0 + 150.0 + 70.0 + 40.0)
    assert close(found.energy_j, 650.0 + 350.0)
    # gCO2e: the prefill joules on the prefill pool's grid and PUE, the decode's on its own.
    assert close(found.prefill_operational_g_co2e, operational_g(650.0, PREFILL_CI, 1.1))
    assert_totals(found)
    # Embodied: each device's rate times the phase's busy seconds on it.
    assert close(found.prefill_embodied_g_co2e, 20.0 * NEW_G_PER_S)
    assert close(found.embodied_g_co2e, 20.0 * NEW_G_PER_S + 40.0 * OLD_G_PER_S)
    assert_conserved(engine, "gpu-new", 650.0, sum(NEW_DELTAS_J))
    assert_conserved(engine, "gpu-old", 350.0, sum(OLD_DELTAS_J))


def test_a_prefill_phase_shares_its_device_with_ordinary_rows(engine: Engine) -> None:
    add_pd_row(engine, "pd1", -90, -70, -30)
    add_row(engine, "mono", -85, -75, pool="new", device="gpu-new")  # 10 in, 20 out
    add_counter(engine, "gpu-new", NEW_DELTAS_J)
    add_counter(engine, "gpu-old", OLD_DELTAS_J)
    settle(engine)

    found, mono = row(engine, "pd1"), row(engine, "mono")
    # Per window of [-90, -70], token-weighted: the prefill phase 1 x 100 prompt tokens x
    # 10/20 of its life; the row (1 x 10 + 4 x 20) x 5/10 of its life.
    prefill_share = 50.0 / (50.0 + 45.0)
    assert close(found.prefill_energy_j, 650.0 * prefill_share)
    assert close(mono.energy_j, 650.0 * (1 - prefill_share))
    assert found.prefill_energy_method == "apportioned" and mono.energy_method == "apportioned"
    assert found.energy_method == "measured"  # alone on the old GPU
    assert close(found.prefill_settled_busy_s, 20.0 * prefill_share)  # busy time alike
    assert_totals(found)
    assert_conserved(engine, "gpu-new", 650.0, sum(NEW_DELTAS_J))


def test_the_phases_settle_in_either_order_and_over_several_runs(engine: Engine) -> None:
    add_pd_row(engine, "pd1", -90, -70, -30)
    add_counter(engine, "gpu-old", OLD_DELTAS_J)
    add_counter(engine, "gpu-new", NEW_DELTAS_J, range(3))  # read up to -80 s so far
    settle(engine, at(-79))  # windows close up to -80 s: the prefill phase has [-90, -80]
    first = row(engine, "pd1")
    assert first.settled_at is None and first.prefill_energy_method == "provisional"
    assert close(first.prefill_settled_j, 250.0)
    settle(engine, stale_meter_s=1_000)  # the decode phase is final first
    middle = row(engine, "pd1")
    assert middle.energy_method == "measured" and close(middle.settled_j, 350.0)
    assert middle.prefill_energy_method == "provisional"
    assert close(middle.energy_j, 350.0 + PREFILL_EST_J)  # the prefill's estimate meanwhile
    add_counter(engine, "gpu-new", NEW_DELTAS_J, range(3, len(TIMES)))  # the rest arrives
    settle(engine)
    final = row(engine, "pd1")
    assert final.prefill_energy_method == "measured"
    assert close(final.prefill_energy_j, 650.0) and close(final.energy_j, 1000.0)
    assert_totals(final)
    assert close(final.embodied_g_co2e, 20.0 * NEW_G_PER_S + 40.0 * OLD_G_PER_S)
    assert_conserved(engine, "gpu-new", 650.0, sum(NEW_DELTAS_J))
    assert_conserved(engine, "gpu-old", 350.0, sum(OLD_DELTAS_J))


def test_a_disaggregated_request_in_flight_holds_the_prefill_pools_windows(
        engine: Engine) -> None:
    add_row(engine, "mono", -95, -15, pool="new", device="gpu-new")
    add_counter(engine, "gpu-new", NEW_DELTAS_J)
    with engine.begin() as connection:  # a live replica has a `pd` request open since -60 s
        connection.execute(insert(replicas).values(
            replica_id="r1", host="host", pid=1, started_at=at(-1_000), heartbeat_at=NOW,
            in_flight_json=f'{{"pd": "{at(-60).isoformat()}"}}', pending_since=None))
    settle(engine)
    with engine.connect() as connection:
        (through,) = connection.execute(select(energy_devices.c.settled_through).where(
            energy_devices.c.device_id == "gpu-new")).one()
    through = through if through.tzinfo else through.replace(tzinfo=UTC)
    assert through <= at(-60)  # its prefill phase (not yet written) may lie after that
    assert row(engine, "mono").settled_at is None


def test_an_unmetered_prefill_device_gives_an_estimated_prefill_phase(engine: Engine) -> None:
    add_pd_row(engine, "pd1", -90, -70, -30)
    add_counter(engine, "gpu-old", OLD_DELTAS_J)  # the new GPU has no meter
    settle(engine)
    found = row(engine, "pd1")
    assert found.energy_method == "measured" and close(found.settled_j, 350.0)
    # Synthesised from the prefill pool's profile like any row on that device, and labelled.
    assert found.prefill_energy_method == "estimated"
    assert found.prefill_energy_j == pytest.approx(20.0 * NEW_PROFILE.active_w, rel=1e-6)
    assert_totals(found)


def test_a_silent_prefill_meter_leaves_the_phases_estimate_labelled(engine: Engine) -> None:
    add_pd_row(engine, "pd1", -90, -70, -30)
    add_counter(engine, "gpu-old", OLD_DELTAS_J)
    add_counter(engine, "gpu-new", NEW_DELTAS_J, range(1))  # one reading, then nothing
    settle(engine)
    found = row(engine, "pd1")
    assert found.prefill_energy_method == "estimated"
    assert found.prefill_energy_j == PREFILL_EST_J  # its provisional figure, kept
    assert close(found.energy_j, 350.0 + PREFILL_EST_J)


def test_a_fallback_is_charged_to_the_member_pool_that_served_it(engine: Engine) -> None:
    # The decode leg failed: the prefill pool's GPU did it all (decoding
    # monolithic:decode-failed); its row is the disaggregated pool's, charged to `new`.
    add_row(engine, "whole", -90, -70, pool="pd", served_pool="new", device="gpu-new")
    add_counter(engine, "gpu-new", NEW_DELTAS_J)
    settle(engine)
    found = row(engine, "whole")
    assert found.energy_method == "measured" and close(found.energy_j, 650.0)
    assert close(found.embodied_g_co2e, 20.0 * NEW_G_PER_S)
