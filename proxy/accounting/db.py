"""Database engines: one URL for SQLite (embedded default) or PostgreSQL."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def normalise_url(url: str) -> str:
    """Use psycopg 3 for bare ``postgresql://`` URLs (psycopg2 is not a dependency)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return url


CONNECT_TIMEOUT_S = 10  # a stopped server accepts TCP connections but never says hello


def make_engine(url: str, *, statement_timeout_s: float | None = None,
                **options: Any) -> Engine:
    """A synchronous engine; the ledger writer uses it from a worker thread.

    With `statement_timeout_s` (the ledger writer's own engine) PostgreSQL cancels a statement
    that waits longer (a lock, a full disk), and connections are not pinged on checkout: the
    writer bounds each whole call itself (`deadline.run_with_deadline`), and a ping would be
    one more wait it could not cut.
    """
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    given = options.pop("connect_args", {})
    connect_args = {"connect_timeout": CONNECT_TIMEOUT_S} | given
    if statement_timeout_s is not None:
        timeout_ms = max(1, round(statement_timeout_s * 1000))
        connect_args = {"connect_timeout": max(2, math.ceil(statement_timeout_s)),
                        "options": f"-c statement_timeout={timeout_ms}"} | given
        return create_engine(url, pool_size=2, max_overflow=2, connect_args=connect_args,
                             **options)
    if "poolclass" in options:
        return create_engine(url, connect_args=connect_args, **options)
    # Enough pooled connections for the ledger writer and the periodic jobs at once (heartbeat,
    # key refresh, sampler, optimiser), so none opens and closes an overflow connection.
    return create_engine(url, pool_pre_ping=True, pool_size=6, max_overflow=4,
                         connect_args=connect_args, **options)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets admin reads run while the writer appends.
    # exp() for the optimiser's decayed sums: SQLite's own is optional at compile time.
    dbapi_connection.create_function("exp", 1, math.exp, deterministic=True)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
