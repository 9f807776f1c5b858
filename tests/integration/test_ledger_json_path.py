"""PostgreSQL ledger batches as one JSON array of journal lines: the same rows COPY would write.

The writer sends the journal's bytes and lets PostgreSQL convert the values (the request
path's process spends next to no interpreter time on a batch). A value that path cannot carry
sends the batch again through the sanitising COPY, so hostile values still never poison it.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from proxy.accounting.db import make_engine
from proxy.accounting.journal import Journal
from proxy.accounting.ledger_writer import LedgerWriter
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.record import DB_COLUMNS, LedgerRow
from proxy.accounting.spill import SpillFile
from proxy.accounting.tables import prompt_samples, requests
from tests.support.ledger import T0
from tests.support.ledger import full_row as _full_row


def _write(pg_url: str, tmp_path: Path, rows: list[LedgerRow], *,
           journal: bool = True) -> tuple[dict[str, dict[str, Any]], LedgerWriter]:
    upgrade_to_head(pg_url)
    engine = make_engine(pg_url)
    spill = SpillFile(tmp_path / "spill.jsonl")
    log = Journal(tmp_path / "journal") if journal else None
    if log is not None:
        log.open()

    async def run() -> LedgerWriter:
        writer = LedgerWriter(engine, spill, log, queue_size=100, batch_size=50,
                              retry_interval_s=0.1)
        writer.start()
        for row in rows:
            writer.submit(row)
        await writer.flush()
        await writer.aclose()
        return writer

    try:
        writer = asyncio.run(run())
        with engine.connect() as connection:
            found = {r.request_id: dict(r._mapping) for r in connection.execute(
                select(requests).where(requests.c.request_id.in_([r.request_id for r in rows])))}
            samples = connection.execute(select(prompt_samples.c.sample_id)).scalars().all()
    finally:
        engine.dispose()
    assert set(samples) >= {r.request_id for r in rows if r.captured_request}
    return found, writer


@pytest.mark.postgres
@pytest.mark.parametrize("journal", [True, False], ids=["journal-bytes", "encoded-in-thread"])
def test_the_json_path_writes_every_value_as_copy_would(
        pg_url: str, tmp_path: Path, journal: bool) -> None:
    rows = [_full_row(f"json-{journal}-{i}", retries=i) for i in range(3)]
    rows.append(LedgerRow(request_id=f"json-{journal}-sparse", created_at=T0, endpoint="chat"))
    found, writer = _write(pg_url, tmp_path, rows, journal=journal)
    assert writer.stats.sanitised_batches == 0  # nothing needed the COPY path
    assert writer.stats.written_rows == len(rows) and writer.stats.quarantined_rows == 0
    for row in rows:
        stored = found[row.request_id]
        for name, expected in zip(DB_COLUMNS, row.db_tuple(), strict=True):
            assert stored[name] == expected, name


@pytest.mark.postgres
def test_values_the_json_path_refuses_go_through_the_sanitising_copy(
        pg_url: str, tmp_path: Path) -> None:
    rows = [_full_row("good-1"),
            _full_row("nul", requested_model="nope\x00"),  # jsonb has no NUL
            _full_row("nan", ttft_ms=math.nan, energy_j=math.inf),  # not JSON
            _full_row("long", requested_model="x" * 5000),  # past the column's 256
            _full_row("good-2")]
    found, writer = _write(pg_url, tmp_path, rows)
    assert writer.stats.sanitised_batches >= 1
    assert set(found) == {r.request_id for r in rows}  # nothing quarantined, nothing lost
    assert writer.stats.quarantined_rows == 0 and writer.stats.dropped_rows == 0
    assert found["nul"]["requested_model"] == "nope\ufffd"
    assert found["nan"]["ttft_ms"] is None and found["nan"]["energy_j"] is None
    assert 0 < len(found["long"]["requested_model"]) <= 256
    assert found["good-2"]["completion_tokens"] == 2**31 - 1
