"""A hung database is reported and never freezes the proxy; a full queue spills in batches."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from proxy.accounting.db import make_engine
from proxy.accounting.ledger_writer import LedgerWriter
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.record import LedgerRow
from proxy.accounting.spill import SpillFile
from tests.conftest import MASTER_KEY, Fake, RunningProxy, fake_pool
from tests.support.ledger import wait_rows
from tests.support.postgres import PostgresServer

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own, so stopping it stalls nobody else."""
    server = PostgresServer()
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.resume()
        server.destroy()


def _ledger(proxy: RunningProxy) -> dict[str, object]:
    ledger: dict[str, object] = httpx.get(proxy.root + "/health", timeout=5).json()["ledger"]
    return ledger


def _wait(condition: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


@pytest.mark.postgres
def test_a_stopped_database_is_reported_down_and_no_row_is_lost(
        start_proxy: Callable[..., RunningProxy], fake: Fake,
        own_postgres: PostgresServer) -> None:
    url = own_postgres.create_database()
    proxy = start_proxy([fake_pool(fake)], url, ledger_statement_timeout_s=1.0)
    client = proxy.client(timeout=10)
    ask = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="fake-model", messages=ask)
    wait_rows(url, 1)

    own_postgres.pause()
    try:
        started = time.monotonic()
        for _ in range(20):  # answered while the ledger's database hangs
            client.chat.completions.create(model="fake-model", messages=ask)
        assert time.monotonic() - started < 5
        _wait(lambda: _ledger(proxy)["database_up"] is False, timeout_s=10)
        ledger = _ledger(proxy)
        assert isinstance(ledger["database_timeouts"], int) and ledger["database_timeouts"] >= 1
        metrics = httpx.get(proxy.root + "/metrics", headers=ADMIN, timeout=5).text
        assert "sprout_ledger_database_up 0.0" in metrics
        timeouts = [line for line in metrics.splitlines()
                    if line.startswith("sprout_ledger_database_timeouts ")]
        assert timeouts and float(timeouts[0].split()[1]) >= 1
    finally:
        own_postgres.resume()

    found = wait_rows(url, 21, timeout_s=30)
    assert len(found) == 21 and len({row["request_id"] for row in found}) == 21
    _wait(lambda: _ledger(proxy)["database_up"] is True, timeout_s=15)
    assert _ledger(proxy)["dropped_rows"] == 0


def _row(index: int) -> LedgerRow:
    return LedgerRow(request_id=f"r-{index}", created_at=datetime.now(UTC), endpoint="chat")


def test_a_full_queue_spills_in_batches_without_freezing_the_loop(tmp_path: Path) -> None:
    # Nothing listens on port 1: every write fails at once, as in an outage.
    engine = make_engine("postgresql+psycopg://x@127.0.0.1:1/db",
                         statement_timeout_s=1.0, connect_args={"connect_timeout": 1})
    spill = SpillFile(tmp_path / "spill.jsonl")
    total, burst = 10_000, 1_000

    async def scenario() -> tuple[float, LedgerWriter]:
        writer = LedgerWriter(engine, spill, queue_size=100, batch_size=50,
                              retry_interval_s=0.2)
        writer.start()
        lag_s = 0.0
        stop = asyncio.Event()

        async def heartbeat() -> None:
            nonlocal lag_s
            while not stop.is_set():
                before = time.perf_counter()
                await asyncio.sleep(0.01)
                lag_s = max(lag_s, time.perf_counter() - before - 0.01)

        beating = asyncio.create_task(heartbeat())
        await asyncio.sleep(0.05)
        for start in range(0, total, burst):  # a settlement burst: many rows in one turn
            for index in range(start, start + burst):
                writer.submit(_row(index))
            await asyncio.sleep(0.02)
        await writer.flush()
        stop.set()
        await beating
        await writer.aclose()
        return lag_s, writer

    try:
        lag_s, writer = asyncio.run(scenario())
    finally:
        engine.dispose()
    # A spilled row used to cost the loop one fsync (about 1 ms on disk): a burst of 1,000
    # froze it for about a second. Now the loop only lists the row.
    assert lag_s < 0.25, f"the event loop stalled for {lag_s * 1000:.0f} ms"
    assert writer.stats.spilled_rows == total and writer.stats.dropped_rows == 0
    assert {row.request_id for row in SpillFile.read(spill.path)} == {
        f"r-{index}" for index in range(total)}


@pytest.mark.postgres
def test_a_hung_write_is_cut_off_and_replayed_once_the_database_answers(
        own_postgres: PostgresServer, tmp_path: Path) -> None:
    url = own_postgres.create_database()
    upgrade_to_head(url)
    engine = make_engine(url, statement_timeout_s=0.5)
    spill = SpillFile(tmp_path / "spill.jsonl")

    async def scenario() -> LedgerWriter:
        writer = LedgerWriter(engine, spill, queue_size=1000, batch_size=50,
                              retry_interval_s=0.2, statement_timeout_s=0.5)
        writer.start()
        writer.submit(_row(0))
        await writer.flush()
        assert writer.stats.written_rows == 1
        own_postgres.pause()
        try:
            for index in range(1, 200):
                writer.submit(_row(index))
            started = time.monotonic()
            await writer.flush()  # cut off after the timeout, not waiting for ever
            assert time.monotonic() - started < 5
            assert not writer.stats.database_up and writer.stats.database_timeouts >= 1
            assert writer.stats.spilled_rows == 199
        finally:
            own_postgres.resume()
        deadline = time.monotonic() + 20
        while writer.stats.replayed_rows < 199:
            assert time.monotonic() < deadline, "the spilled rows were never replayed"
            await asyncio.sleep(0.1)
        await writer.aclose()
        return writer

    try:
        writer = asyncio.run(scenario())
    finally:
        engine.dispose()
    assert writer.stats.database_up and writer.stats.dropped_rows == 0
    assert len(wait_rows(url, 200)) == 200
