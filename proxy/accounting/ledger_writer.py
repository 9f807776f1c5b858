"""LedgerWriter: a bounded queue drained in batches by one background task; never blocks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.dialects import postgresql, sqlite

from proxy.accounting.deadline import DatabaseStalled, Watch, run_with_deadline
from proxy.accounting.journal import Journal
from proxy.accounting.record import DB_COLUMNS, FIELDS, LedgerRow, journal_line
from proxy.accounting.safe_values import column_limits, safe_text, safe_values
from proxy.accounting.spill import SpillFile
from proxy.accounting.tables import prompt_samples, requests

log = logging.getLogger(__name__)

_CLOSE = object()
_LIMITS = column_limits(requests, DB_COLUMNS)
_SAMPLE_LIMITS = {column.name: limit for column, limit in zip(
    prompt_samples.columns, column_limits(prompt_samples, prompt_samples.c.keys()), strict=True)
    if limit is not None and limit > 0}


@dataclasses.dataclass(slots=True)
class LedgerStats:
    """Counters exposed on /health; `dropped_rows` must stay 0."""

    written_rows: int = 0
    spilled_rows: int = 0
    replayed_rows: int = 0
    journal_replayed_rows: int = 0
    journal_errors: int = 0
    quarantined_rows: int = 0  # refused by the database; kept in the quarantine file
    dropped_rows: int = 0
    database_timeouts: int = 0  # calls cut off after `statement_timeout_s` (a hung database)
    sanitised_batches: int = 0  # batches the JSON path refused, sent again through COPY
    database_up: bool = True


Observer = Callable[[LedgerRow], None]
JOURNAL_SYNC_S = 1.0
STATEMENT_TIMEOUT_S = 5.0


class LedgerWriter:
    """Accepts rows on the request path and writes them in batches off it.

    `submit` is synchronous and O(1): it appends the row to the local journal, then puts it on
    a bounded queue, or, when the queue is full, on an overflow list that one task appends to
    the spill file in batches, off the loop (one fsync per batch, never one per row). The
    background task inserts batches in a worker thread (on PostgreSQL as one JSON array of the
    rows' journal lines, `_json_append`), each call bounded by `statement_timeout_s`; if the
    insert fails or hangs the batch goes to the spill file, and spilled rows are replayed
    (idempotently, keyed by request id) once the database answers again. Journal segments
    are dropped once their rows are written or spilled.
    """

    def __init__(
        self,
        engine: Engine,
        spill: SpillFile,
        journal: Journal | None = None,
        *,
        queue_size: int,
        batch_size: int,
        retry_interval_s: float,
        linger_s: float = 0.0,
        statement_timeout_s: float = STATEMENT_TIMEOUT_S,
        observers: Sequence[Observer] = (),
    ) -> None:
        self._engine = engine
        self._spill = spill
        self._quarantine_file = spill.path.with_name("ledger-quarantine.jsonl")
        self._journal = journal
        self._observers = tuple(observers)
        # request id -> arrival of rows handed over but not yet in the database (settlement
        # must not close a window such a row may overlap), and the oldest spilled one.
        self._pending: dict[str, datetime] = {}
        self._spilled_since: datetime | None = None
        self._synced_at = 0.0
        # The first journal sequence of a row neither written nor spilled: segments from it on
        # stay for the next start to replay.
        self._journal_hold: int | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)
        self._batch_size = batch_size
        self._retry_interval_s = retry_interval_s
        self._linger_s = linger_s
        self._statement_timeout_s = statement_timeout_s
        # Rows that found the queue full, and those being spilled, with journal sequences.
        self._overflow: list[tuple[int, LedgerRow]] = []
        self._spilling: list[tuple[int, LedgerRow]] = []
        self._overflow_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._insert = _insert_ignoring_duplicates(engine)
        self._append = _bulk_append(engine) or self._insert
        self._json_append = _json_append(engine)
        self.stats = LedgerStats()

    @property
    def queue_depth(self) -> int:
        """Rows waiting in memory."""
        return self._queue.qsize()

    def pending_since(self) -> datetime | None:
        """When the oldest row not yet in the database arrived (None: all written)."""
        oldest = min(self._pending.values(), default=None)
        if self._spilled_since is not None and (oldest is None or self._spilled_since < oldest):
            return self._spilled_since
        return oldest

    def submit(self, row: LedgerRow) -> None:
        """Hand over one finished row; never waits. Journaled before this returns."""
        for observe in self._observers:
            observe(row)
        seq = 0
        line: bytes | None = None
        if self._journal is not None:
            try:
                line = journal_line(row)
                seq = self._journal.append_line(line)
            except Exception:  # a full disk, a closed journal: the row still goes on below
                self.stats.journal_errors += 1
                log.exception("ledger journal unwritable: row %s only in memory", row.request_id)
        self._pending[row.request_id] = row.created_at
        try:
            self._queue.put_nowait((seq, row, line))
        except asyncio.QueueFull:
            self._overflow.append((seq, row))
            if self._overflow_task is None:
                self._overflow_task = asyncio.get_running_loop().create_task(
                    self._spill_overflow(), name="ledger-overflow")

    async def _spill_overflow(self) -> None:
        """Spill the rows that found the queue full, a batch per fsync, off the loop."""
        try:
            while self._overflow:
                self._spilling, self._overflow = self._overflow, []
                dropped = self.stats.dropped_rows
                await self._spill_batch([row for _, row in self._spilling])
                if self.stats.dropped_rows != dropped and self._journal_hold is None:
                    self._journal_hold = self._spilling[0][0]
                self._spilling = []
        finally:
            self._overflow_task = None

    def _journal_limit(self, last_seq: int) -> int:
        """The last journal sequence that may be released: none of a row not yet safe."""
        limit = last_seq
        if self._journal_hold is not None:
            limit = min(limit, self._journal_hold - 1)
        waiting = self._spilling or self._overflow
        if waiting:
            limit = min(limit, waiting[0][0] - 1)
        return limit

    def _mark_spilled(self, rows: list[LedgerRow]) -> None:
        for row in rows:
            self._pending.pop(row.request_id, None)
            if self._spilled_since is None or row.created_at < self._spilled_since:
                self._spilled_since = row.created_at

    async def replay_journal(self) -> int:
        """Write the journals of processes that died (at start, before serving)."""
        if self._journal is None:
            return 0
        replayed = 0
        for owner, segments in self._journal.orphans():
            rows = [row for path in segments for row in await asyncio.to_thread(Journal.read, path)]
            if rows:
                try:
                    for start in range(0, len(rows), self._batch_size):
                        await self._call(self._insert, rows[start:start + self._batch_size])
                except Exception as exc:  # database down: keep them in the spill file instead
                    log.warning("journal replay: database unavailable (%s); spilling %d rows",
                                type(exc).__name__, len(rows))
                    await asyncio.to_thread(self._spill.append, rows)
                    self._mark_spilled(rows)
            Journal.forget(self._journal.directory, owner, segments)
            replayed += len(rows)
            log.info("replayed %d ledger rows from the journal of dead process %s",
                     len(rows), owner)
        self.stats.journal_replayed_rows += replayed
        return replayed

    def start(self) -> None:
        """Start the background task (inside the running event loop)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ledger-writer")

    async def aclose(self) -> None:
        """Write (or spill) everything queued, then stop (the journal goes with it)."""
        if self._task is None:
            return
        await self._queue.put(_CLOSE)
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self._overflow_spilled()
        if self._journal is not None:
            self._journal.close(all_written=self.stats.dropped_rows == 0)

    async def flush(self) -> None:
        """Wait until every row submitted so far is written or spilled."""
        await self._queue.join()
        await self._overflow_spilled()

    async def _overflow_spilled(self) -> None:
        while self._overflow_task is not None:
            await asyncio.shield(self._overflow_task)

    async def _run(self) -> None:
        closing = False
        while not closing:
            try:
                first = await asyncio.wait_for(self._queue.get(), self._retry_interval_s)
            except TimeoutError:
                await self._replay_spill()
                continue
            # `first` is a (seq, row, journal line) or the close marker; both are marked done
            # after the batch.
            batch: list[LedgerRow] = []
            lines: list[bytes | None] = []
            first_seq = last_seq = 0
            if first is _CLOSE:
                closing = True
            else:
                first_seq = last_seq = first[0]
                batch.append(first[1])
                lines.append(first[2])
                if self._linger_s and self._queue.qsize() < self._batch_size:
                    await asyncio.sleep(self._linger_s)  # one transaction for many rows
            while len(batch) < self._batch_size and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _CLOSE:
                    closing = True
                else:
                    last_seq = item[0]
                    batch.append(item[1])
                    lines.append(item[2])
            try:
                if batch:
                    dropped = self.stats.dropped_rows
                    await self._write(batch, lines)
                    if self.stats.dropped_rows != dropped and self._journal_hold is None:
                        self._journal_hold = first_seq
                    if self._journal is not None:
                        # Rows neither written nor spilled stay in the journal for the next
                        # start: nothing from the first of them on is released.
                        self._journal.release(self._journal_limit(last_seq))
                        await self._sync_journal()
                if self.stats.database_up:
                    await self._replay_spill()
            finally:
                for _ in range(len(batch) + closing):
                    self._queue.task_done()

    async def _sync_journal(self) -> None:
        now = time.monotonic()
        if self._journal is not None and now - self._synced_at >= JOURNAL_SYNC_S:
            self._synced_at = now
            await asyncio.to_thread(self._journal.sync)

    async def _call(self, write: Write, rows: list[LedgerRow]) -> None:
        """One database call in a worker thread, cut off past the statement timeout."""
        try:
            await run_with_deadline(lambda watch: write(rows, watch), self._statement_timeout_s)
        except DatabaseStalled:
            self.stats.database_timeouts += 1
            if self.stats.database_up:
                log.warning("ledger database hung (no answer within %g s); spilling rows to %s",
                            self._statement_timeout_s, self._spill.path)
            self.stats.database_up = False
            raise

    async def _write(self, batch: list[LedgerRow], lines: list[bytes | None]) -> None:
        try:
            if self._json_append is None:
                await self._call(self._append, batch)
            else:
                try:
                    await self._call(functools.partial(self._json_append, lines=lines), batch)
                except Exception as exc:
                    if not _is_bad_row(exc):
                        raise
                    self.stats.sanitised_batches += 1
                    # A value the JSON path cannot carry (a NUL, NaN, an over-long text):
                    # the same batch through COPY, each value made safe first.
                    await self._call(self._append, batch)
        except Exception as exc:
            if _is_bad_row(exc):  # the database answered: some row of the batch is refused
                written, rest = await self._insert_each(batch)
                self._written(written)
                if rest:
                    await self._spill_batch(rest)
                else:
                    self.stats.database_up = True
                return
            # Any other driver error: the database is unusable for now.
            if self.stats.database_up:
                log.warning("ledger database unavailable (%s); spilling rows to %s",
                            type(exc).__name__, self._spill.path)
            self.stats.database_up = False
            await self._spill_batch(batch)
            return
        self._written(batch)
        if not self.stats.database_up:
            log.info("ledger database is back")
        self.stats.database_up = True

    async def _insert_each(
            self, rows: list[LedgerRow]) -> tuple[list[LedgerRow], list[LedgerRow]]:
        """Insert one row at a time, quarantining each one the database refuses.

        Returns the rows written and those not handled because the database went away.
        """
        written: list[LedgerRow] = []
        for index, row in enumerate(rows):
            try:
                await self._call(self._insert, [row])
            except Exception as exc:
                if not _is_bad_row(exc):
                    self.stats.database_up = False
                    return written, rows[index:]
                await self._quarantine(row, exc)
                continue
            written.append(row)
        return written, []

    async def _quarantine(self, row: LedgerRow, exc: Exception) -> None:
        """Keep a refused row, with why, apart from the ledger (never retried blindly)."""
        self.stats.quarantined_rows += 1
        self._pending.pop(row.request_id, None)
        log.error("ledger row %s refused by the database (%s); quarantined in %s",
                  row.request_id, type(exc).__name__, self._quarantine_file)
        line = json.dumps({"error": f"{type(exc).__name__}: {exc}"[:2000],
                           "row": row.as_json_values()}) + "\n"
        try:
            await asyncio.to_thread(_append_line, self._quarantine_file, line)
        except OSError:
            self.stats.dropped_rows += 1
            log.exception("quarantine file unwritable: row %s dropped", row.request_id)

    def _written(self, rows: list[LedgerRow]) -> None:
        for row in rows:
            self._pending.pop(row.request_id, None)
        self.stats.written_rows += len(rows)

    async def _spill_batch(self, batch: list[LedgerRow]) -> None:
        try:
            await asyncio.to_thread(self._spill.append, batch)
            self.stats.spilled_rows += len(batch)
            self._mark_spilled(batch)
        except OSError:
            self.stats.dropped_rows += len(batch)
            for row in batch:
                self._pending.pop(row.request_id, None)
            log.exception("spill file unwritable: %d ledger rows dropped", len(batch))

    async def _replay_spill(self) -> None:
        if not self._spill.has_rows():
            return
        path = self._spill.take()
        if path is None:
            return
        rows = await asyncio.to_thread(self._spill.read, path)
        for start in range(0, len(rows), self._batch_size):
            chunk = rows[start : start + self._batch_size]
            try:
                await self._call(self._insert, chunk)
            except Exception as exc:
                if not _is_bad_row(exc):  # still down: the taken file is retried first next
                    self.stats.database_up = False
                    return
                # A refused row must never block the replay: isolate it, keep the rest.
                _, rest = await self._insert_each(chunk)
                if rest:  # the database went away: the taken file is retried first next
                    return
        self._spill.finish(path)
        if not self._spill.has_rows():
            self._spilled_since = None
        self.stats.replayed_rows += len(rows)
        self.stats.database_up = True
        log.info("replayed %d spilled ledger rows", len(rows))


Write = Callable[[list[LedgerRow], Watch], None]

# The database answered and refused the data (as opposed to being unreachable).
_BAD_ROW_ERRORS = ("DataError", "IntegrityError", "ProgrammingError", "NotSupportedError",
                   "StringDataRightTruncation", "CharacterNotInRepertoire",
                   "UntranslatableCharacter", "InvalidTextRepresentation", "EncodingError",
                   "UnicodeEncodeError", "ValueError", "TypeError")


def _is_bad_row(exc: BaseException) -> bool:
    """Whether an insert failed because of a row's values, not the database's state."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(kind.__name__ in _BAD_ROW_ERRORS for kind in type(current).__mro__):
            return True
        current = current.__cause__ or getattr(current, "orig", None)
    return False


def _append_line(path: Path, line: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def _bulk_append(engine: Engine) -> Write | None:
    """PostgreSQL: COPY, several times cheaper per row than executemany (None elsewhere).

    Only for fresh rows, whose request ids are new; spill replays, which may repeat rows whose
    commit was acknowledged too late, go through `_insert_ignoring_duplicates`.
    """
    if engine.dialect.name != "postgresql":
        return None
    columns = list(DB_COLUMNS)  # the settlement columns start empty
    statement = f"COPY {requests.name} ({', '.join(columns)}) FROM STDIN"
    samples = _on_conflict_do_nothing(engine, prompt_samples, "sample_id")

    def append(rows: list[LedgerRow], watch: Watch) -> None:
        try:
            with engine.begin() as connection:
                watch.use(connection)
                raw = connection.connection.driver_connection
                assert raw is not None
                with raw.cursor() as cursor, cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row(safe_values(row.db_tuple(), _LIMITS))
                _insert_samples(connection, samples, rows)
        finally:
            watch.done()

    return append


def _json_append(engine: Engine) -> Callable[..., None] | None:
    """PostgreSQL: a batch as one JSON array of the rows' journal lines (None elsewhere).

    The request path has already encoded every row for the journal; sending those bytes lets
    the database parse and convert the values, so a batch costs this process almost no
    interpreter time (COPY formats and checks each value here: ~13 µs a row, holding the GIL
    against the event loop). A value JSON or its cast refuses (a NUL, NaN, an over-long text,
    an integer out of range) fails the whole statement, and `_write` sends the batch again
    through the sanitising COPY. Fresh rows only, as for COPY.
    """
    if engine.dialect.name != "postgresql":
        return None
    casts = []
    for name in DB_COLUMNS:
        kind = requests.c[name].type.compile(dialect=engine.dialect)
        if kind.startswith("VARCHAR"):  # the column's own length check, not a cast's cut
            kind = "TEXT"
        casts.append(f"CAST(e->>{FIELDS.index(name)} AS {kind})")
    statement = (f"INSERT INTO {requests.name} ({', '.join(DB_COLUMNS)}) "
                 f"SELECT {', '.join(casts)} FROM jsonb_array_elements(CAST(%s AS jsonb)) AS e")
    samples = _on_conflict_do_nothing(engine, prompt_samples, "sample_id")

    def append(rows: list[LedgerRow], watch: Watch, *, lines: list[bytes | None]) -> None:
        encoded = [line if line is not None else journal_line(row)
                   for row, line in zip(rows, lines, strict=True)]
        payload = (b"[" + b",".join(encoded) + b"]").decode()
        try:
            with engine.begin() as connection:
                watch.use(connection)
                raw = connection.connection.driver_connection
                assert raw is not None
                with raw.cursor() as cursor:
                    cursor.execute(statement, (payload,))
                _insert_samples(connection, samples, rows)
        finally:
            watch.done()

    return append


def _insert_ignoring_duplicates(engine: Engine) -> Write:
    """An executemany INSERT that skips rows already present (replays are idempotent)."""
    statement = _on_conflict_do_nothing(engine, requests, "request_id")
    samples = _on_conflict_do_nothing(engine, prompt_samples, "sample_id")

    def insert(rows: list[LedgerRow], watch: Watch) -> None:
        try:
            with engine.begin() as connection:
                watch.use(connection)
                connection.execute(statement, [
                    dict(zip(DB_COLUMNS, safe_values(row.db_tuple(), _LIMITS), strict=True))
                    for row in rows])
                _insert_samples(connection, samples, rows)
        finally:
            watch.done()

    return insert


def _insert_samples(connection: Connection, statement: Any, rows: list[LedgerRow]) -> None:
    """Captured prompts go in the same transaction as their ledger rows."""
    values = [{name: safe_text(value, _SAMPLE_LIMITS.get(name)) if isinstance(value, str)
               else value for name, value in sample.items()}
              for row in rows if (sample := row.sample_values()) is not None]
    if values:
        connection.execute(statement, values)


def _on_conflict_do_nothing(engine: Engine, table: Table, key: str) -> Any:
    dialect = engine.dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=[key])
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing(index_elements=[key])
    raise ValueError(f"unsupported ledger database dialect: {dialect}")
