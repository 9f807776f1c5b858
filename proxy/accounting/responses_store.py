"""ResponseStore: the responses the proxy keeps (Responses API `store`), under a retention period.

A stored response is written before its client sees the end of it, so a follow-up request
with `previous_response_id` finds it on any replica. Writes are group-committed: the puts that
arrive while one transaction runs share the next one (one upsert of many rows), so under load
a commit is paid per batch, not per response. Each transaction runs in a worker thread and
none is held while an upstream answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select, text
from sqlalchemy.dialects import postgresql, sqlite

from proxy.accounting.tables import stored_responses


@dataclasses.dataclass(frozen=True, slots=True)
class StoredResponse:
    """One kept response: the earlier turns, this turn's input and the response object."""

    response_id: str
    api_key_id: str | None
    model: str
    pool: str | None
    native: bool  # answered by the pool's own /v1/responses (which holds it too)
    history: list[dict[str, Any]] | None  # None: it continues turns the proxy never saw
    input_items: list[dict[str, Any]]
    response_json: str

    def output(self) -> list[dict[str, Any]]:
        """The response's output items."""
        output = json.loads(self.response_json).get("output")
        return output if isinstance(output, list) else []

    def conversation(self) -> list[dict[str, Any]] | None:
        """Every item a follow-up turn continues from: earlier turns, input, output."""
        if self.history is None:
            return None
        return [*self.history, *self.input_items, *self.output()]


class ResponseStore:
    """Reads and writes `stored_responses`; `retention` bounds how long a response is kept."""

    def __init__(self, engine: Engine, retention: timedelta) -> None:
        self._engine = engine
        self._retention = retention
        self._pending: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None
        dialect = engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(stored_responses)
        replaced = {c.name: statement.excluded[c.name] for c in stored_responses.columns
                    if c.name != "response_id"}
        # An upstream that reuses an id: the newest answer wins.
        self._upsert = statement.on_conflict_do_update(index_elements=["response_id"],
                                                       set_=replaced)

    async def get(self, response_id: str, api_key_id: str | None) -> StoredResponse | None:
        """The response if it exists, is unexpired and belongs to this key."""
        stored = await self.find(response_id)
        return stored if stored is not None and stored.api_key_id == api_key_id else None

    async def find(self, response_id: str) -> StoredResponse | None:
        """The unexpired response, whichever key it belongs to (callers check the owner)."""
        return await asyncio.to_thread(self._get, response_id, datetime.now(UTC))

    async def put(self, response: StoredResponse, request_id: str) -> None:
        """Keep a response; returns once it is committed (with whatever else was waiting)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((self._values(response, request_id, datetime.now(UTC)), done))
        if self._flushing is None or self._flushing.done():
            self._flushing = asyncio.ensure_future(self._flush())
        await done

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await asyncio.to_thread(self._write, [values for values, _ in batch])
            except Exception as exc:  # every waiter of this batch learns it failed
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def delete(self, response_id: str, api_key_id: str | None) -> bool:
        """Forget a response; False if there was none for this key."""
        return await asyncio.to_thread(self._delete, response_id, api_key_id)

    def delete_expired(self, now: datetime) -> int:
        """Remove responses past retention (the clean-up job, off the request path)."""
        with self._engine.begin() as connection:
            removed = connection.execute(
                delete(stored_responses).where(stored_responses.c.expires_at < now)).rowcount
        return int(removed or 0)

    def _get(self, response_id: str, now: datetime) -> StoredResponse | None:
        columns = stored_responses.c
        with self._engine.connect() as connection:
            row = connection.execute(select(stored_responses).where(
                columns.response_id == response_id, columns.expires_at >= now)).first()
        if row is None:
            return None
        return StoredResponse(row.response_id, row.api_key_id, row.model, row.pool,
                              bool(row.native), json.loads(row.history_json),
                              json.loads(row.input_json), row.response_json)

    def _values(self, response: StoredResponse, request_id: str,
                now: datetime) -> dict[str, Any]:
        return {
            "response_id": response.response_id, "request_id": request_id,
            "api_key_id": response.api_key_id, "created_at": now,
            "expires_at": now + self._retention, "model": response.model[:256],
            "pool": response.pool, "native": response.native,
            "history_json": json.dumps(response.history),
            "input_json": json.dumps(response.input_items),
            "response_json": response.response_json,
        }

    def _write(self, rows: list[dict[str, Any]]) -> None:
        unique = {row["response_id"]: row for row in rows}  # one upsert may not repeat a key
        with self._engine.begin() as connection:
            if self._engine.dialect.name == "postgresql":
                # Visible to every replica at commit; only a PostgreSQL crash in the next
                # ~0.6 s (3 x wal_writer_delay) could lose it, and then only its continuation.
                connection.execute(text("SET LOCAL synchronous_commit TO OFF"))
            connection.execute(self._upsert, list(unique.values()))

    def _delete(self, response_id: str, api_key_id: str | None) -> bool:
        with self._engine.begin() as connection:
            removed = connection.execute(delete(stored_responses).where(
                stored_responses.c.response_id == response_id, _key_is(api_key_id))).rowcount
        return bool(removed)


def _key_is(api_key_id: str | None) -> Any:
    column = stored_responses.c.api_key_id
    return column.is_(None) if api_key_id is None else column == api_key_id
