"""ResponseStore: the responses the proxy keeps (Responses API `store`), under a retention period.

A stored response is written before its client sees the end of it, so a follow-up request
with `previous_response_id` finds it on any replica. Each call is one short transaction in a
worker thread; none is held while an upstream answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, delete, select
from sqlalchemy.exc import IntegrityError

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

    async def get(self, response_id: str, api_key_id: str | None) -> StoredResponse | None:
        """The response if it exists, is unexpired and belongs to this key."""
        stored = await self.find(response_id)
        return stored if stored is not None and stored.api_key_id == api_key_id else None

    async def find(self, response_id: str) -> StoredResponse | None:
        """The unexpired response, whichever key it belongs to (callers check the owner)."""
        return await asyncio.to_thread(self._get, response_id, datetime.now(UTC))

    async def put(self, response: StoredResponse, request_id: str) -> None:
        """Keep a response (a second write of the same id replaces the first)."""
        await asyncio.to_thread(self._put, response, request_id, datetime.now(UTC))

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

    def _put(self, response: StoredResponse, request_id: str, now: datetime) -> None:
        values = {
            "response_id": response.response_id, "request_id": request_id,
            "api_key_id": response.api_key_id, "created_at": now,
            "expires_at": now + self._retention, "model": response.model[:256],
            "pool": response.pool, "native": response.native,
            "history_json": json.dumps(response.history),
            "input_json": json.dumps(response.input_items),
            "response_json": response.response_json,
        }
        with self._engine.begin() as connection:
            try:
                with connection.begin_nested():
                    connection.execute(stored_responses.insert().values(**values))
            except IntegrityError:  # an upstream that reuses ids: the newest answer wins
                connection.execute(stored_responses.update().where(
                    stored_responses.c.response_id == response.response_id).values(**values))

    def _delete(self, response_id: str, api_key_id: str | None) -> bool:
        with self._engine.begin() as connection:
            removed = connection.execute(delete(stored_responses).where(
                stored_responses.c.response_id == response_id, _key_is(api_key_id))).rowcount
        return bool(removed)


def _key_is(api_key_id: str | None) -> Any:
    column = stored_responses.c.api_key_id
    return column.is_(None) if api_key_id is None else column == api_key_id
