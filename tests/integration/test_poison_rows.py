"""Hostile values never poison the PostgreSQL ledger: made safe, or quarantined one by one."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import openai
import pytest

from proxy.accounting.db import make_engine
from proxy.accounting.ledger_writer import LedgerWriter
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.record import LedgerRow
from proxy.accounting.spill import SpillFile
from tests.conftest import MASTER_KEY, Fake, RunningProxy
from tests.support.ledger import rows, wait_rows

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}


@pytest.mark.postgres
def test_a_nul_in_the_model_name_is_a_404_and_the_ledger_keeps_working(
        proxy: RunningProxy, fake: Fake) -> None:
    answer = httpx.post(proxy.url + "/chat/completions", headers=ADMIN, content=(
        b'{"model":"nope\\u0000","messages":[{"role":"user","content":"hi"}]}'))
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "model_not_found"
    proxy.client().chat.completions.create(model="fake-model", messages=[
        {"role": "user", "content": "still there?"}])
    found = wait_rows(proxy.database_url, 2)
    assert found[0]["requested_model"] == "nope\ufffd" and found[0]["status"] == "rejected"
    ledger = httpx.get(proxy.root + "/health").json()["ledger"]
    assert ledger["database_up"] is True and ledger["quarantined_rows"] == 0


@pytest.mark.postgres
def test_absurd_numbers_get_a_clear_400_naming_the_param(proxy: RunningProxy) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        proxy.client().chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "hi"}],
            max_tokens=10**400)
    assert raised.value.status_code == 400
    assert raised.value.body["param"] == "max_tokens"  # type: ignore[index]
    (row,) = wait_rows(proxy.database_url, 1)
    assert row["status"] == "rejected" and row["http_status"] == 400


@pytest.mark.postgres
def test_a_nul_in_a_key_name_is_a_400(proxy: RunningProxy) -> None:
    answer = httpx.post(proxy.root + "/admin/keys", headers=ADMIN, json={"name": "a\u0000b"})
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "name"


def _row(request_id: str, **values: object) -> LedgerRow:
    return LedgerRow(request_id=request_id, created_at=datetime.now(UTC), endpoint="chat",
                     **values)  # type: ignore[arg-type]


@pytest.mark.postgres
def test_a_refused_row_is_quarantined_alone_and_the_rest_are_written(
        pg_url: str, tmp_path: Path) -> None:
    upgrade_to_head(pg_url)
    engine = make_engine(pg_url)
    spill = SpillFile(tmp_path / "spill.jsonl")
    # A row the database refuses whatever is done to its strings (a count that is not one),
    # waiting in the spill file among good rows, and another arriving live.
    spill.append([_row("ok-1"), _row("bad-1", prompt_tokens="many"), _row("ok-2"),
                  _row("huge", completion_tokens=10**15, requested_model="x" * 5000)])

    async def run() -> LedgerWriter:
        writer = LedgerWriter(engine, spill, queue_size=100, batch_size=50,
                              retry_interval_s=0.1)
        writer.start()
        writer.submit(_row("ok-3"))
        writer.submit(_row("bad-2", prompt_tokens="lots"))
        writer.submit(_row("ok-4"))
        await asyncio.sleep(1.0)
        await writer.aclose()
        return writer

    writer = asyncio.run(run())
    engine.dispose()
    stored = {r["request_id"]: r for r in rows(pg_url)}
    assert set(stored) == {"ok-1", "ok-2", "ok-3", "ok-4", "huge"}
    assert stored["huge"]["completion_tokens"] == 2**31 - 1  # clipped, not refused
    assert len(stored["huge"]["requested_model"]) == 256
    assert writer.stats.quarantined_rows == 2 and writer.stats.database_up
    assert writer.stats.dropped_rows == 0 and not spill.has_rows()
    quarantined = [json.loads(line) for line in
                   (tmp_path / "ledger-quarantine.jsonl").read_text().splitlines()]
    assert {q["row"]["request_id"] for q in quarantined} == {"bad-1", "bad-2"}
    assert all("Error" in q["error"] for q in quarantined)
