"""LeaderLock: one proxy process runs the fleet-wide jobs.

PostgreSQL: the leader holds `pg_try_advisory_lock` on a dedicated connection for as long as
it lives; when it dies its connection closes and the lock frees, and another replica takes it
on its next check. SQLite (one host): an exclusive `flock` on a file beside the database, so
of `serve --workers N` processes exactly one leads, and the kernel frees it when that one dies.

Several jobs ask from worker threads; answers are cached for `cache_s` and checks serialised.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

# Any constant shared by all replicas; "sprout" in ASCII.
LOCK_KEY = 0x73_70_72_6F_75_74


class LeaderLock:
    """`is_leader()` acquires the lock if free and checks it is still held."""

    def __init__(self, engine: Engine, key: int = LOCK_KEY, cache_s: float = 1.0) -> None:
        # A session lock must never go back into a pool (the next user would hold it
        # unknowingly), so the lock lives on its own unpooled connection.
        self._postgres = engine.dialect.name == "postgresql"
        self._engine = create_engine(engine.url, poolclass=NullPool) if self._postgres else engine
        self._key = key
        self._connection: Any = None
        self._file: int | None = None
        database = engine.url.database if engine.dialect.name == "sqlite" else None
        self._lock_path = (Path(f"{database}.leader") if database and database != ":memory:"
                           else None)
        self._guard = threading.Lock()
        self._cache_s = cache_s
        self._checked_at = float("-inf")
        self._held = False

    @property
    def held(self) -> bool:
        """The last answer, without a check (cheap, for status displays)."""
        return self._held

    def is_leader(self) -> bool:
        """Blocking (call from a thread): whether this process leads now."""
        with self._guard:
            now = time.monotonic()
            if now - self._checked_at < self._cache_s:
                return self._held
            self._held = self._check()
            self._checked_at = now
            return self._held

    def _check(self) -> bool:
        if not self._postgres:
            return self._check_file()
        if self._connection is not None:
            try:
                self._connection.execute(text("SELECT 1"))
                self._connection.commit()  # never left idle in a transaction
                return True
            except Exception:  # the connection (and with it the lock) is gone
                self._drop()
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

    def _check_file(self) -> bool:
        if self._lock_path is None:
            return True
        if self._file is not None:
            return True
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self._lock_path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._file = descriptor
        return True

    def _drop(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                         {"key": self._key})
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.close(self._file)  # closing the descriptor frees the flock
            self._file = None

    def release(self) -> None:
        """Give the lead up (another process may lead at its next check)."""
        with self._guard:
            self._drop()
            self._held = False
            self._checked_at = float("-inf")
