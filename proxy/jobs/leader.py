"""LeaderLock: one proxy replica runs the jobs (PostgreSQL session advisory lock).

The leader holds `pg_try_advisory_lock` on a dedicated connection for as long as it lives; when
it dies its connection closes and the lock frees, and another replica takes it on its next
tick. SQLite is single-node by nature, so there every process leads.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

# Any constant shared by all replicas; "sprout" in ASCII.
LOCK_KEY = 0x73_70_72_6F_75_74


class LeaderLock:
    """`is_leader()` acquires the lock if free and checks it is still held."""

    def __init__(self, engine: Engine, key: int = LOCK_KEY) -> None:
        # A session lock must never go back into a pool (the next user would hold it
        # unknowingly), so the lock lives on its own unpooled connection.
        self._engine = (create_engine(engine.url, poolclass=NullPool)
                        if engine.dialect.name == "postgresql" else engine)
        self._key = key
        self._connection: Any = None

    def is_leader(self) -> bool:
        """Blocking (call from a thread): whether this process leads now."""
        if self._engine.dialect.name != "postgresql":
            return True
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1"))
                return True
            except Exception:  # the connection (and with it the lock) is gone
                self.release()
        try:
            connection = self._engine.connect()
            acquired = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}).scalar()
            connection.commit()
        except Exception:
            return False
        if acquired:
            self._connection = connection
            return True
        connection.close()
        return False

    def release(self) -> None:
        """Give the lead up (unlock, and closing the session frees it in any case)."""
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                         {"key": self._key})
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
