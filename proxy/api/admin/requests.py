"""`/admin/requests`: the ledger, filtered and paginated with an opaque cursor."""

from __future__ import annotations

import asyncio
import base64
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import Engine, and_, or_, select

from proxy.accounting.tables import requests
from proxy.api.admin.deps import AdminDep
from proxy.errors import InvalidRequest, NotFound

router = APIRouter(prefix="/admin/requests", tags=["admin"])


class RequestPage(BaseModel):
    """One page, newest first; pass `next_cursor` back as `cursor` for the next."""

    data: list[dict[str, Any]]
    next_cursor: str | None


def _encode(created_at: datetime, request_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created_at.isoformat()}|{request_id}".encode()).decode()


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        created, request_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return datetime.fromisoformat(created), request_id
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("Invalid cursor.", code="invalid_cursor", param="cursor") from exc


@router.get("", summary="List ledger rows (filters, cursor pagination)")
async def list_requests(
    state: AdminDep,
    since: datetime | None = None,
    until: datetime | None = None,
    key: str | None = None,
    pool: str | None = None,
    model: str | None = None,
    status: str | None = None,
    endpoint: str | None = None,
    evaluator: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: str | None = None,
) -> RequestPage:
    """Rows matching every filter given."""
    columns = requests.c
    conditions = []
    for column, value in [(columns.api_key_id, key), (columns.pool, pool),
                          (columns.requested_model, model), (columns.status, status),
                          (columns.endpoint, endpoint), (columns.is_evaluator, evaluator)]:
        if value is not None:
            conditions.append(column == value)
    if since is not None:
        conditions.append(columns.created_at >= since)
    if until is not None:
        conditions.append(columns.created_at < until)
    if cursor is not None:
        created, request_id = _decode(cursor)
        conditions.append(or_(columns.created_at < created, and_(
            columns.created_at == created, columns.request_id < request_id)))
    query = (select(requests).where(*conditions)
             .order_by(columns.created_at.desc(), columns.request_id.desc()).limit(limit + 1))
    rows = await asyncio.to_thread(_fetch, state.engine, query)
    page = rows[:limit]
    next_cursor = (_encode(page[-1]["created_at"], page[-1]["request_id"])
                   if len(rows) > limit else None)
    return RequestPage(data=page, next_cursor=next_cursor)


@router.get("/{request_id}", summary="One ledger row")
async def get_request(request_id: str, state: AdminDep) -> dict[str, Any]:
    """The row, or 404."""
    rows = await asyncio.to_thread(
        _fetch, state.engine, select(requests).where(requests.c.request_id == request_id))
    if not rows:
        raise NotFound(f"No request {request_id!r}.", code="request_not_found")
    return rows[0]


def _fetch(engine: Engine, query: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]
