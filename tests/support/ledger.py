"""Reading the ledger as an operator would: straight from the database."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import create_engine, func, select

from proxy.accounting.db import normalise_url
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
