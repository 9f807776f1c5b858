"""Reading the ledger as an operator would: straight from the database."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import create_engine, func, select

from proxy.accounting.db import normalise_url
from proxy.accounting.record import LedgerRow
from proxy.accounting.tables import requests


def rows(database_url: str) -> list[dict[str, Any]]:
    """Every ledger row, oldest first."""
    engine = create_engine(normalise_url(database_url))
    try:
        with engine.connect() as connection:
            result = connection.execute(select(requests).order_by(requests.c.created_at))
            return [dict(row._mapping) for row in result]
    finally:
        engine.dispose()


def wait_rows(database_url: str, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Wait until the ledger holds at least `count` rows (the writer is asynchronous)."""
    deadline = time.monotonic() + timeout_s
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        engine = create_engine(normalise_url(database_url))
        try:
            with engine.connect() as connection:
                total = connection.execute(select(func.count()).select_from(requests)).scalar()
        except Exception:
            total = 0
        finally:
            engine.dispose()
        if total and total >= count:
            found = rows(database_url)
            break
        time.sleep(0.05)
    else:
        found = rows(database_url)
    assert len(found) >= count, f"expected {count} ledger rows, found {len(found)}"
    return found


def wait_settled(database_url: str, count: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """Wait until at least `count` rows are settled (final energy), then every row."""
    deadline = time.monotonic() + timeout_s
    settled = 0
    while time.monotonic() < deadline:
        engine = create_engine(normalise_url(database_url))
        try:
            with engine.connect() as connection:
                settled = connection.execute(select(func.count()).select_from(requests).where(
                    requests.c.settled_at.is_not(None))).scalar() or 0
        except Exception:
            settled = 0
        finally:
            engine.dispose()
        if settled >= count:
            break
        time.sleep(0.1)
    assert settled >= count, f"expected {count} settled rows, found {settled}"
    return rows(database_url)


T0 = datetime(2026, 12, 1, 18, 44, 37, 123456, tzinfo=UTC)


def full_row(request_id: str, **changes: Any) -> LedgerRow:
    """A row with every kind of value set: texts (non-ASCII too), counts, floats, flags, times."""
    row = LedgerRow(
        request_id=request_id, created_at=T0, endpoint="chat", stream=True,
        api_key_id="key_ünï", requested_model="fake-model — «quoted» \"x\"\\y",
        upstream_model="fake-model", pool="stub", backend="openai",
        backend_url="http://127.0.0.1:9000", prompt_tokens=12, completion_tokens=2**31 - 1,
        usage_estimated=True, usage_source="upstream", ttft_ms=1.25, latency_ms=2.5,
        overhead_ms=0.375, http_status=200, status="ok", error_type=None,
        error_message="line one\nline two\ttab", finish_reason="stop", retries=2,
        is_evaluator=False, decoding="plain", route_policy="energy",
        predicted_output_tokens=38.0, predicted_energy_j=1.5e-3, directive_level="L1",
        directive_hash="abcd1234", task_class="qa", energy_j=1.4e-12,
        energy_method="estimated:profile", ci_g_per_kwh=320.0, ci_source="static",
        operational_g_co2e=1e-5, embodied_g_co2e=2.5e-6, pue=1.1, device_id="host:GPU-1",
        served_at=T0 + timedelta(microseconds=10), ended_at=T0 + timedelta(seconds=2),
        prefill_pool="old", prefill_device_id="host:GPU-0",
        prefill_backend_url="http://127.0.0.1:9001", prefill_ended_at=T0 + timedelta(seconds=1),
        kv_transfer_bytes=2**40, prefill_energy_j=0.5, prefill_operational_g_co2e=1e-6,
        prefill_embodied_g_co2e=1e-7, prefill_energy_method="measured", served_pool="stub",
        captured_request='{"model":"fake-model","messages":[]}')
    return dataclasses.replace(row, **changes)
