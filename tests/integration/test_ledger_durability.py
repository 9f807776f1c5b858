"""The request path never waits for the database, and no ledger row is ever lost."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime

import httpx
from sqlalchemy import create_engine

from proxy.accounting.db import normalise_url
from proxy.accounting.ledger_writer import LedgerWriter
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.record import LedgerRow
from proxy.accounting.spill import SpillFile
from tests.conftest import fake_pool
from tests.support.ledger import rows, wait_rows

MESSAGES = [{"role": "user", "content": "hello"}]


def test_postgres_outage_mid_run_loses_no_row(start_proxy, fake, postgres, pg_url) -> None:
    proxy = start_proxy([fake_pool(fake)], pg_url)
    client = proxy.client()
    for _ in range(5):
        client.chat.completions.create(model="fake-model", messages=MESSAGES)
    wait_rows(pg_url, 5)

    postgres.stop()
    try:
        # Requests keep being answered while the database is down.
        for i in range(20):
            stream = i % 2 == 0
            reply = client.chat.completions.create(model="fake-model", messages=MESSAGES,
                                                   stream=stream)
            if stream:
                list(reply)  # type: ignore[call-overload]
        # Rows reach the writer once their energy window settles (about a tick later).
        deadline = time.monotonic() + 10
        while True:
            health = httpx.get(proxy.root + "/health").json()["ledger"]
            if health["database_up"] is False and health["spilled_rows"] >= 1:
                break
            assert time.monotonic() < deadline, health
            time.sleep(0.1)
    finally:
        postgres.start()

    found = wait_rows(pg_url, 25, timeout_s=20)
    assert len(found) == 25
    assert len({r["request_id"] for r in found}) == 25  # replay is not double-counted
    health = httpx.get(proxy.root + "/health").json()["ledger"]
    assert health["dropped_rows"] == 0 and health["database_up"] is True
    assert health["replayed_rows"] + health["written_rows"] == 25


def test_shutdown_while_database_down_spills_and_next_start_replays(
    start_proxy, fake, postgres, pg_url, tmp_path
) -> None:
    proxy = start_proxy([fake_pool(fake)], pg_url)
    client = proxy.client()
    postgres.stop()
    try:
        for _ in range(3):
            client.chat.completions.create(model="fake-model", messages=MESSAGES)
        proxy.stop()  # rows still queued are spilled on the way out
        spill = SpillFile(tmp_path / "spill.jsonl")
        assert spill.pending_rows() == 3
    finally:
        postgres.start()
    start_proxy([fake_pool(fake)], pg_url)  # same spill path: replays what the first left
    assert len(wait_rows(pg_url, 3, timeout_s=20)) == 3


def test_full_queue_spills_instead_of_blocking(tmp_path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db"
    upgrade_to_head(url)
    engine = create_engine(normalise_url(url))
    spill = SpillFile(tmp_path / "spill.jsonl")

    async def scenario() -> LedgerWriter:
        writer = LedgerWriter(engine, spill, queue_size=4, batch_size=2, retry_interval_s=0.05)
        # Not started yet: the queue fills, then the rest go to the spill file, in one batch
        # off the event loop.
        for i in range(10):
            writer.submit(_row(f"r{i}"))
        assert writer.queue_depth == 4
        for _ in range(100):
            if writer.stats.spilled_rows == 6:
                break
            await asyncio.sleep(0.02)
        assert writer.stats.spilled_rows == 6 and writer.stats.dropped_rows == 0
        assert len(SpillFile.read(spill.path)) == 6
        writer.start()
        await writer.flush()
        for _ in range(100):  # the idle loop replays the spill file
            if writer.stats.replayed_rows == 6:
                break
            await asyncio.sleep(0.02)
        await writer.aclose()
        return writer

    writer = asyncio.run(scenario())
    assert writer.stats.written_rows == 4 and writer.stats.replayed_rows == 6
    assert sorted(r["request_id"] for r in rows(url)) == sorted(f"r{i}" for i in range(10))
    assert not spill.has_rows()
    engine.dispose()


def test_torn_spill_line_is_skipped_not_fatal(tmp_path) -> None:
    spill = SpillFile(tmp_path / "spill.jsonl")
    spill.append([_row("a"), _row("b")])
    with spill.path.open("a") as handle:
        handle.write(json.dumps(_row("c").as_json_values())[:20])  # crash mid-write
    taken = spill.take()
    assert taken is not None
    assert [r.request_id for r in SpillFile.read(taken)] == ["a", "b"]


def _row(request_id: str) -> LedgerRow:
    return LedgerRow(request_id=request_id, created_at=datetime.now(UTC), endpoint="chat",
                     http_status=200, latency_ms=1.0)


