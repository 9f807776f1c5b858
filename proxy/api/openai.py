"""OpenAI-compatible routes: chat, completions, embeddings, responses, models."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from starlette.types import Scope

from proxy.api.body import parse_body, read_body
from proxy.api.deps import StateDep, get_state
from proxy.auth.keys import MASTER_KEY_ID
from proxy.errors import NotFound, ProxyError, TooManyConnections
from proxy.pools.config import Endpoint
from proxy.protocol.chat import ChatCompletionRequest
from proxy.protocol.completions import CompletionRequest, EmbeddingRequest
from proxy.protocol.models import ModelCard, ModelList
from proxy.protocol.responses import ResponsesRequest
from proxy.server.protocol import DISCONNECT, OVER_CAPACITY, body_in
from proxy.serving.deadline import TIMEOUT_HEADER, request_deadline
from proxy.serving.service import InferenceRequest
from proxy.state import AppState

router = APIRouter(prefix="/v1", tags=["openai"])

_MODELS: dict[Endpoint, type[InferenceRequest]] = {
    "chat": ChatCompletionRequest,
    "completions": CompletionRequest,
    "embeddings": EmbeddingRequest,
    "responses": ResponsesRequest,
}


# The request headers the inference pipeline reads, found in one pass over the raw list
# (Starlette's `Headers.get` scans and decodes the whole list for each name asked).
_WANTED = frozenset({b"authorization", b"x-sprout-evaluator", b"x-sprout-directive",
                     TIMEOUT_HEADER.encode(), b"content-length", b"transfer-encoding"})


def _headers(scope: Scope) -> dict[bytes, str]:
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED and name not in found:  # uvicorn gives names in lower case
            found[name] = value.decode("latin-1")
    return found


async def serve(request: Request, endpoint: Endpoint) -> Response:
    """The one pipeline all inference endpoints share."""
    state: AppState = get_state(request)
    serving = state.serving
    exchange = serving.begin(endpoint)
    settings = state.settings
    headers = _headers(request.scope)
    body_read = False
    try:
        over = request.scope.get("extensions", {}).get(OVER_CAPACITY)
        if over is not None:  # marked by proxy/server/protocol.py
            raise TooManyConnections(
                f"The server has too many open connections ({over['connections']} > "
                f"{over['max_connections']}); retry shortly.", code="too_many_connections",
                headers={"retry-after": "1", "connection": "close"})
        # The key first, from the headers alone: a stranger's body is never buffered.
        exchange.api_key_id = state.keys.authenticate(headers.get(b"authorization"))
        # Evaluator traffic is counted in the ledger but apart from client traffic; only the
        # master key (which the evaluator uses) may mark it.
        exchange.is_evaluator = (exchange.api_key_id == MASTER_KEY_ID
                                     and b"x-sprout-evaluator" in headers)
        body = await read_body(request.receive, headers.get(b"content-length"),
                               settings.max_body_bytes, settings.server_body_timeout_s,
                               arrived=body_in(request.scope))
        body_read = True
        parsed = parse_body(_MODELS[endpoint], body)
        deadline = request_deadline(headers.get(TIMEOUT_HEADER.encode()), parsed.is_stream,
                                    settings.request_timeout_s,
                                    settings.stream_first_byte_timeout_s)
    except ProxyError as exc:
        response = serving.reject(exchange, exc)
        if not body_read and _has_body(headers):
            response.headers["connection"] = "close"  # its unread body is not worth reading
        return response
    except asyncio.CancelledError:  # the shutdown grace ended while the body was coming in
        response = serving.shut_down(exchange)
        response.headers["connection"] = "close"
        return response
    try:
        return await serving.serve(exchange, parsed, request.receive,
                                   headers.get(b"x-sprout-directive"), deadline,
                                   request.scope.get("extensions", {}).get(DISCONNECT))
    except asyncio.CancelledError:
        # The shutdown grace ended in a step that does not answer for itself (a stored
        # Responses turn being read or written): still OpenAI's envelope and a row.
        if exchange.recorded:
            raise
        return serving.shut_down(exchange)


def _has_body(headers: dict[bytes, str]) -> bool:
    declared = headers.get(b"content-length")
    return declared != "0" and (declared is not None or b"transfer-encoding" in headers)


@router.post("/chat/completions", summary="Create a chat completion (OpenAI-compatible)")
async def chat_completions(request: Request) -> Response:
    """Chat completion, plain or streamed."""
    return await serve(request, "chat")


@router.post("/completions", summary="Create a text completion (OpenAI-compatible)")
async def completions(request: Request) -> Response:
    """Legacy text completion, plain or streamed."""
    return await serve(request, "completions")


@router.post("/embeddings", summary="Create embeddings (OpenAI-compatible)")
async def embeddings(request: Request) -> Response:
    """Embeddings, passed to a pool that serves them."""
    return await serve(request, "embeddings")


@router.post("/responses", summary="Create a response (OpenAI Responses API)")
async def responses(request: Request) -> Response:
    """A response, plain or streamed as typed events; native or translated from chat."""
    return await serve(request, "responses")


# The inference routes, answered by `proxy.app.SproutApp` ahead of FastAPI's middleware and
# routing (the routes above stay for the OpenAPI schema and for a path FastAPI must resolve,
# such as one under a root path).
FAST_PATHS: dict[str, Endpoint] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
}


@router.get("/models", summary="List the models the configured pools serve")
async def list_models(request: Request, state: StateDep) -> ModelList:
    """Models of every pool."""
    state.keys.authenticate(request.headers.get("authorization"))
    return ModelList(data=[ModelCard(id=name) for name in state.registry.model_ids()])


@router.get("/models/{model_id:path}", summary="Retrieve one model")
async def retrieve_model(model_id: str, request: Request, state: StateDep) -> ModelCard:
    """One model, or 404 in OpenAI's format."""
    state.keys.authenticate(request.headers.get("authorization"))
    if model_id not in state.registry.model_ids():
        raise NotFound(f"The model '{model_id}' does not exist", code="model_not_found",
                       param="model")
    return ModelCard(id=model_id)
