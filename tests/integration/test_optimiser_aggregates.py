"""The optimiser reads hourly sums kept by the database, and they weigh like the raw rows."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete, insert, update

from proxy.accounting import repository
from proxy.accounting.db import make_engine
from proxy.accounting.ledger_writer import LedgerWriter
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.record import LedgerRow
from proxy.accounting.spill import SpillFile
from proxy.accounting.tables import requests
from proxy.optimiser.inputs import DecayedUsage, Usage, Verdict, build_terms

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LEVELS = ("L0", "L1", "L2")
CLASSES = ("chat", "code")


def _rows(count: int) -> list[LedgerRow]:
    draw = random.Random(7)
    rows = []
    for index in range(count):
        age_s = draw.uniform(0, 190 * 3600)
        metered = draw.random() < 0.5
        rows.append(LedgerRow(
            request_id=f"r-{index}", created_at=NOW - timedelta(seconds=age_s), endpoint="chat",
            task_class=draw.choice(CLASSES), directive_level=draw.choice(LEVELS),
            completion_tokens=draw.randint(1, 800), latency_ms=draw.uniform(50, 9000),
            energy_j=draw.uniform(1, 500) if metered else None,
            is_evaluator=draw.random() < 0.1,
            status="ok" if draw.random() < 0.95 else "error"))
    return rows


def _terms(usage: list[Usage] | list[DecayedUsage]) -> list[tuple[float, ...]]:
    verdicts = [Verdict(c, level, 1.0) for c in CLASSES for level in LEVELS for _ in range(5)]
    built = build_terms(LEVELS, CLASSES, usage, verdicts, ci_g_per_kwh=300.0,
                        j_per_output_token=0.3, half_life_h=24.0, prior_strength=2.0,
                        lower_bound_z=1.0, min_verdicts=1)
    assert built.terms is not None
    return [(term.share, *term.carbon_g) for term in built.terms]


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_decayed_sums_from_hourly_rollups_match_the_raw_rows(
        backend: str, pg_url: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ledger.db" if backend == "sqlite" else pg_url
    upgrade_to_head(url)
    engine = make_engine(url)
    rows = _rows(3000)
    with engine.begin() as connection:
        connection.execute(insert(requests), [row.as_db_values() for row in rows[:2000]])
    writer = LedgerWriter(engine, SpillFile(tmp_path / "spill.jsonl"), queue_size=5000,
                          batch_size=400, retry_interval_s=0.1)

    async def write() -> None:  # the writer's own path (COPY on PostgreSQL), and a replay
        writer.start()
        for row in rows[1500:]:  # 500 already there: skipped, counted once
            writer.submit(row)
        await writer.aclose()

    SpillFile(tmp_path / "spill.jsonl").append(rows[1500:2000])
    asyncio.run(write())
    assert writer.stats.dropped_rows == 0
    # Settlement replaces provisional joules, marks rows settled; retention deletes.
    settled = {row.request_id: float(index) for index, row in enumerate(rows[::7])}
    with engine.begin() as connection:
        for request_id, joules in settled.items():
            connection.execute(update(requests).where(requests.c.request_id == request_id)
                               .values(energy_j=joules, settled_at=NOW))
        connection.execute(update(requests).values(settled_at=NOW))
        connection.execute(delete(requests).where(requests.c.request_id.in_(
            [row.request_id for row in rows[::11]])))
    rows = [dataclasses.replace(row, energy_j=settled.get(row.request_id, row.energy_j))
            for index, row in enumerate(rows) if index % 11]
    since = NOW - timedelta(hours=192)
    with engine.connect() as connection:
        decayed = repository.decayed_usage(connection, NOW, since, half_life_h=24.0)
        last_hour = repository.served_since(connection, NOW - timedelta(hours=1))
    engine.dispose()

    kept = [row for row in rows if row.status == "ok" and row.created_at >= since]
    raw = [Usage(row.task_class or "", row.directive_level or "", row.completion_tokens or 0,
                 row.latency_ms / 1000, row.energy_j,
                 (NOW - row.created_at).total_seconds() / 3600, row.is_evaluator)
           for row in kept]
    assert len(decayed) == len(CLASSES) * len(LEVELS) * 2  # not one row per request
    assert last_hour == sum(1 for u in raw if u.age_h < 1 and not u.is_evaluator)
    # Decayed traffic shares from hourly sums match the row-by-row figures to within the
    # bound for a 24 h half-life, (ln 2 / 24)^2 / 8 = 1.04e-4; per-level carbon (decayed means)
    # to 0.1% (the rows' weights within one hour differ by at most 2.9%, and mostly cancel).
    for from_buckets, from_rows in zip(_terms(decayed), _terms(raw), strict=True):
        assert from_buckets[0] == pytest.approx(from_rows[0], rel=1.1e-4)
        assert from_buckets[1:] == pytest.approx(from_rows[1:], rel=1e-3)
