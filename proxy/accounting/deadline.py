"""Deadline: a blocking database call in a worker thread, cut off when the database hangs.

A stopped database server (SIGSTOP, a frozen VM) never answers and never closes the connection:
its kernel still acknowledges every packet, so neither TCP keep-alives nor the server's own
`statement_timeout` end the wait, and a writer thread would wait for ever while rows pile up in
memory. `run_with_deadline` waits at most `timeout_s`, then cuts the connection the call is
using (shuts its socket down; SQLite: interrupts it) so that the thread and its pooled
connection come back with an error instead of piling up, and raises `DatabaseStalled`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection

T = TypeVar("T")


class DatabaseStalled(Exception):
    """The database did not answer within the deadline."""


class Watch:
    """The DBAPI connection a call is using, so that the event loop's side can cut it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._connection: Any = None
        self._cut = False

    def use(self, connection: Connection) -> None:
        """Register the connection the calling thread is about to wait on."""
        raw = connection.connection.driver_connection
        with self._lock:
            if self._cut:  # the deadline passed while this thread waited for a connection
                raise DatabaseStalled("deadline passed before the statement started")
            self._connection = raw

    def done(self) -> None:
        """The call no longer uses its connection (it went back to the pool)."""
        with self._lock:
            self._connection = None

    def cut(self) -> None:
        """Make the blocked call fail now (from another thread)."""
        with self._lock:
            self._cut = True
            raw = self._connection
            if raw is None:
                return
            interrupt = getattr(raw, "interrupt", None)  # sqlite3
            if callable(interrupt):
                interrupt()
                return
            # psycopg: shutting the socket down wakes the thread blocked on it with an error;
            # the socket object is a duplicate so the driver still owns (and closes) its own.
            with contextlib.suppress(OSError, ValueError):
                duplicate = socket.socket(fileno=os.dup(raw.fileno()))
                try:
                    duplicate.shutdown(socket.SHUT_RDWR)
                finally:
                    duplicate.close()


async def run_with_deadline(call: Callable[[Watch], T], timeout_s: float) -> T:
    """Run `call(watch)` in a worker thread; past `timeout_s` cut it and raise DatabaseStalled.

    `call` must `watch.use(connection)` before its first statement and `watch.done()` after
    the connection went back to the pool.
    """
    watch = Watch()
    future = asyncio.ensure_future(asyncio.to_thread(call, watch))
    done, _ = await asyncio.wait({future}, timeout=timeout_s)
    if future in done:
        return future.result()
    watch.cut()
    # The thread ends soon with the cut connection's error; nobody waits for it any more.
    future.add_done_callback(lambda finished: finished.cancelled() or finished.exception())
    raise DatabaseStalled(f"no answer from the database within {timeout_s:g} s")
