"""KeyUsageSync on SQLite and PostgreSQL: two replicas within a limit; budgets from the ledger."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from proxy.accounting.db import make_engine
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.record import LedgerRow
from proxy.accounting.tables import requests
from proxy.auth.keys import KeyRing
from proxy.directives.policy import KeyPolicy
from proxy.errors import KeyRateLimited
from proxy.limits.policy import DEFAULT_BUDGET_STEPS, KeyLimits
from proxy.limits.sync import KeyUsageSync
from proxy.limits.usage import KeyUsage


@dataclasses.dataclass
class Seat:
    """A replica's place in the fleet, as its heartbeat would report it."""

    replica_id: str
    live: int
    index: int


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'sprout.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    upgrade_to_head(url)
    return url


def _admit_all(usage: KeyUsage, attempts: int) -> int:
    admitted = 0
    for _ in range(attempts):
        try:
            usage.admit("key_a")
            admitted += 1
        except KeyRateLimited:
            pass
    return admitted


def _two_replicas(engine: Engine,
                  clock: Callable[[], datetime]) -> list[tuple[KeyUsage, KeyUsageSync]]:
    """Two replicas' usage and sync over one database, for key_a at 10 requests a minute."""
    keys = KeyRing(None, {"d": "key_a"},
                   {"key_a": KeyPolicy(limits=KeyLimits(requests_per_minute=10))})
    replicas = []
    for index in range(2):
        usage = KeyUsage(keys, DEFAULT_BUDGET_STEPS, flush_s=1.0, clock=clock)
        sync = KeyUsageSync(engine, usage, Seat(f"r{index}", 2, index), interval_s=1.0,
                            base_refresh_s=60.0, clock=clock)
        replicas.append((usage, sync))
    return replicas


def test_two_replicas_leasing_in_turn_admit_exactly_the_limit(database_url: str) -> None:
    engine = make_engine(database_url)
    now = datetime.now(UTC).replace(second=5)
    now = now if now <= datetime.now(UTC) else now - timedelta(minutes=1)
    clock = lambda: now  # noqa: E731 - one frozen moment for both replicas
    replicas = _two_replicas(engine, clock)

    async def rounds() -> int:
        admitted = 0
        for _ in range(6):  # each replica flushes and leases, then takes all it is given
            for usage, sync in replicas:
                await sync.run_once()
                admitted += _admit_all(usage, 8)
        return admitted

    try:
        assert asyncio.run(rounds()) == 10
    finally:
        engine.dispose()


def test_a_closed_minutes_unused_leases_are_given_back(database_url: str) -> None:
    """CI: a burst left both replicas holding a spare lease when the minute turned; the
    sliding window then counted those unused leases as used and refused for seconds."""
    engine = make_engine(database_url)
    start = datetime.now(UTC).replace(second=40, microsecond=0) - timedelta(minutes=5)
    moment = [start]
    clock = lambda: moment[0]  # noqa: E731 - one clock for both replicas, moved by the test
    replicas = _two_replicas(engine, clock)

    async def flush_all() -> None:
        for _usage, sync in replicas:
            await sync.run_once()

    async def scenario() -> tuple[int, int]:
        used = 0
        for _ in range(4):  # a trickle: one request at each replica per flush
            for usage, sync in replicas:
                await sync.run_once()
                used += _admit_all(usage, 1)
        await flush_all()  # 8 of 10 used, each active replica holding a spare lease
        moment[0] = start + timedelta(seconds=23)  # 3 s into the next minute: 8 x 0.95 = 7.6
        await flush_all()  # each replica's counts of the closed minute are in
        await flush_all()
        after = 0
        for usage, sync in replicas:
            after += _admit_all(usage, 5)
            await sync.run_once()
        return used, after

    try:
        used, after = asyncio.run(scenario())
    finally:
        engine.dispose()
    assert used == 8
    # 10 - 7.6 = 2.4: two more. Counting the spare leases as used (10 x 0.95) admitted none.
    assert after == 2


def test_a_carbon_budget_counts_the_ledgers_settled_rows_and_recent_usage(
        database_url: str) -> None:
    engine = make_engine(database_url)
    now = datetime.now(UTC)
    earlier = now - timedelta(minutes=10)
    if earlier.date() != now.date():  # just after midnight: the row belongs to yesterday
        now, earlier = now + timedelta(minutes=15), now + timedelta(minutes=5)
    row = LedgerRow(request_id="req_settled", created_at=earlier, endpoint="chat",
                    api_key_id="key_a", latency_ms=10.0, http_status=200,
                    operational_g_co2e=0.6, embodied_g_co2e=0.1)
    with engine.begin() as connection:
        connection.execute(insert(requests).values(row.as_db_values()))
    keys = KeyRing(None, {"d": "key_a"},
                   {"key_a": KeyPolicy(limits=KeyLimits(carbon_budget_g_co2e=1.0))})
    usage = KeyUsage(keys, DEFAULT_BUDGET_STEPS, flush_s=1.0, clock=lambda: now)
    sync = KeyUsageSync(engine, usage, Seat("r0", 1, 0), interval_s=1.0, base_refresh_s=60.0,
                        clock=lambda: now)
    try:
        asyncio.run(sync.run_once())
        assert usage.budget_level("key_a") is None  # 0.7 of 1.0
        usage.record(dataclasses.replace(row, request_id="req_new", created_at=now,
                                         operational_g_co2e=0.15, embodied_g_co2e=0.0))
        asyncio.run(sync.run_once())
        view = usage.view("key_a", KeyLimits(carbon_budget_g_co2e=1.0))
        assert view.carbon_g_co2e == pytest.approx(0.85)
        assert view.budget_state == "nearing" and view.shortened_to == "L1"
    finally:
        engine.dispose()
