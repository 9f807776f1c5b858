"""Stored responses: `GET` and `DELETE /v1/responses/{id}`, `GET /v1/responses/{id}/input_items`.

`POST /v1/responses` is an inference route (api/openai.py). These read the proxy's own
store: every response created through the proxy with `store` not false, for its own key only.
"""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from proxy.accounting.responses_store import ResponseStore, StoredResponse
from proxy.api.deps import StateDep
from proxy.errors import InvalidRequest, NotFound
from proxy.protocol.responses import InputItemList
from proxy.state import AppState

router = APIRouter(prefix="/v1", tags=["openai"])


def _store(state: AppState) -> ResponseStore:
    store = state.serving.responses.store
    if store is None:
        raise NotFound("Responses are not stored on this proxy (PROXY_RESPONSES_STORE=false).",
                       code="responses_store_disabled")
    return store


async def _stored(state: AppState, request: Request, response_id: str) -> StoredResponse:
    key_id = state.keys.authenticate(request.headers.get("authorization"))
    stored = await _store(state).get(response_id, key_id)
    if stored is None:
        raise NotFound(f"Response with id '{response_id}' not found.", code="not_found",
                       param="response_id")
    return stored


@router.get("/responses/{response_id}", summary="Retrieve a stored response")
async def retrieve_response(response_id: str, request: Request, state: StateDep,
                            stream: bool = False) -> Response:
    """The response object exactly as its client received it."""
    if stream:
        raise InvalidRequest("Streaming a stored response again is not supported: the proxy "
                             "does not run background responses.", code="unsupported_value",
                             param="stream")
    stored = await _stored(state, request, response_id)
    return Response(stored.response_json, media_type="application/json")


@router.delete("/responses/{response_id}", summary="Delete a stored response")
async def delete_response(response_id: str, request: Request, state: StateDep) -> Response:
    """Forget a stored response (it can no longer be continued or retrieved)."""
    key_id = state.keys.authenticate(request.headers.get("authorization"))
    if not await _store(state).delete(response_id, key_id):
        raise NotFound(f"Response with id '{response_id}' not found.", code="not_found",
                       param="response_id")
    body = {"id": response_id, "object": "response", "deleted": True}
    return Response(json.dumps(body), media_type="application/json")


@router.get("/responses/{response_id}/input_items",
            summary="List the input items of a stored response")
async def list_input_items(
    response_id: str, request: Request, state: StateDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> InputItemList:
    """The input items of this turn only (not earlier turns'), newest first by default."""
    stored = await _stored(state, request, response_id)
    items = stored.input_items if order == "asc" else stored.input_items[::-1]
    if after is not None:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item with id '{after}' in this response.",
                                 code="invalid_value", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return InputItemList(data=page, first_id=page[0]["id"] if page else None,
                         last_id=page[-1]["id"] if page else None,
                         has_more=len(items) > limit)
