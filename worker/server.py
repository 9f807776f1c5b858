"""The worker's OpenAI-compatible HTTP API over one `Engine`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from proxy.api.body import parse_body
from proxy.energy.base import EnergyMeter
from proxy.energy.null import NullMeter
from proxy.errors import ProxyError
from proxy.protocol.chat import ChatCompletionRequest
from proxy.protocol.completions import CompletionRequest, EmbeddingRequest
from proxy.protocol.errors import ErrorEnvelope
from proxy.serving.exchange import error_body, wait_for_disconnect
from worker.engine import Engine, Generation, Sampling
from worker.meter import device_identity, energy_router

DEFAULT_MAX_TOKENS = 64


def create_app(engine: Engine, *, max_tokens_cap: int = 2048,
               meter: EnergyMeter | None = None, device_id: str | None = None) -> FastAPI:
    """Routes for chat, completions, embeddings and models, and the device's energy.

    Every response names the device that computed it (`x-sprout-device`), the same id as the
    energy document's, so the proxy files the request's row and the counter's samples under
    one device even when several workers answer behind one URL.
    """
    app = FastAPI(title="sprout-worker")
    app.add_exception_handler(ProxyError, _proxy_error)
    device = device_id or device_identity(engine.devices)
    served = {"requests": 0}

    @app.middleware("http")
    async def device_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["x-sprout-decoding"] = engine.decoding
        response.headers["x-sprout-device"] = device
        if request.url.path.startswith("/v1/") and request.method == "POST":
            served["requests"] += 1
        return response

    app.include_router(energy_router(meter or NullMeter(), device))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": engine.served_name, "device": engine.device,
                "device_id": device, "decoding": engine.decoding,
                "served_requests": served["requests"]}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": engine.served_name, "object": "model", "created": 0,
                "owned_by": "sprout-worker"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = parse_body(ChatCompletionRequest, await request.body())
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        prompt = engine.chat_prompt(messages)
        limit = body.max_completion_tokens or body.max_tokens
        return await _respond(engine, request, "chat", body.model, prompt,
                              _sampling(body, limit, max_tokens_cap), body.is_stream,
                              _include_usage(body))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = parse_body(CompletionRequest, await request.body())
        if not isinstance(body.prompt, str) and not _is_token_list(body.prompt):
            return _error(400, "this worker takes one prompt per request", "prompt")
        prompt = engine.text_prompt(body.prompt)  # type: ignore[arg-type]
        return await _respond(engine, request, "completions", body.model, prompt,
                              _sampling(body, body.max_tokens, max_tokens_cap), body.is_stream,
                              _include_usage(body))

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> Response:
        body = parse_body(EmbeddingRequest, await request.body())
        texts = [body.input] if isinstance(body.input, str) else body.input
        if not all(isinstance(text, str) for text in texts):
            return _error(400, "this worker embeds text inputs only", "input")
        vectors, tokens = await asyncio.to_thread(engine.embed, texts)  # type: ignore[arg-type]
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        return JSONResponse({"object": "list", "data": data, "model": body.model,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    return app


def _sampling(body: ChatCompletionRequest | CompletionRequest, limit: int | None,
              cap: int) -> Sampling:
    extra = body.model_extra or {}
    stop = extra.get("stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    temperature = 1.0 if body.temperature is None else float(body.temperature)
    return Sampling(
        max_new_tokens=min(limit or DEFAULT_MAX_TOKENS, cap),
        temperature=temperature,
        top_p=1.0 if body.top_p is None else float(body.top_p),
        stop=stops,
        seed=extra.get("seed") if isinstance(extra.get("seed"), int) else None,
    )


def _include_usage(body: ChatCompletionRequest | CompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _is_token_list(prompt: object) -> bool:
    return isinstance(prompt, list) and all(isinstance(item, int) for item in prompt)


async def _respond(engine: Engine, request: Request, kind: str, model: str, prompt: list[int],
                   sampling: Sampling, stream: bool, include_usage: bool) -> Response:
    if stream:
        return StreamingResponse(
            _events(engine, kind, model, prompt, sampling, include_usage),
            media_type="text/event-stream",
        )
    cancel = threading.Event()
    job = asyncio.ensure_future(asyncio.to_thread(engine.generate, prompt, sampling,
                                                  cancel=cancel))
    watch = asyncio.ensure_future(wait_for_disconnect(request.receive))
    await asyncio.wait((job, watch), return_when=asyncio.FIRST_COMPLETED)
    watch.cancel()
    if not job.done():
        cancel.set()  # the client left: stop generating within one token
        with contextlib.suppress(Exception):
            await job
        return Response(status_code=499)
    generation: Generation = job.result()
    text = engine.decode(generation.completion_ids)
    choice: dict[str, Any] = {"index": 0, "finish_reason": generation.finish_reason,
                              "logprobs": None}
    if kind == "chat":
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return JSONResponse({
        "id": _id(kind), "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": int(time.time()), "model": model, "choices": [choice],
        "usage": _usage(generation),
    })


async def _events(engine: Engine, kind: str, model: str, prompt: list[int], sampling: Sampling,
                  include_usage: bool) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    cancel = threading.Event()

    def push(token: int) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, token)

    def run() -> Generation:
        try:
            return engine.generate(prompt, sampling, cancel=cancel, on_token=push)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, None)

    job = asyncio.ensure_future(asyncio.to_thread(run))
    chat = kind == "chat"
    base = {"id": _id(kind), "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()), "model": model}
    usage_field = {"usage": None} if include_usage else {}
    try:
        if chat:
            yield _sse(base | {"choices": [{"index": 0, "delta": {"role": "assistant",
                                                                  "content": ""},
                                            "finish_reason": None}]} | usage_field)
        ids: list[int] = []
        sent = ""
        while (token := await queue.get()) is not None:
            ids.append(token)
            text = engine.decode(ids)
            if text.endswith("\ufffd"):
                continue  # an incomplete multi-byte character: wait for the next token
            delta, sent = text[len(sent):], text
            if delta:
                piece = {"delta": {"content": delta}} if chat else {"text": delta}
                yield _sse(base | {"choices": [{"index": 0, "finish_reason": None} | piece]}
                           | usage_field)
        generation = await job
        last = {"delta": {}} if chat else {"text": ""}
        yield _sse(base | {"choices": [{"index": 0, "finish_reason": generation.finish_reason}
                                       | last]} | usage_field)
        if include_usage:
            yield _sse(base | {"choices": [], "usage": _usage(generation)})
        yield b"data: [DONE]\n\n"
    finally:
        cancel.set()  # client gone or finished: never leave a generation running
        with contextlib.suppress(Exception):
            await job


def _usage(generation: Generation) -> dict[str, int]:
    completion = len(generation.completion_ids)
    return {"prompt_tokens": generation.prompt_tokens, "completion_tokens": completion,
            "total_tokens": generation.prompt_tokens + completion}


def _sse(document: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(document).encode() + b"\n\n"


def _id(kind: str) -> str:
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex


async def _proxy_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProxyError)
    return Response(error_body(exc), status_code=exc.status_code, media_type="application/json")


def _error(status: int, message: str, param: str | None = None) -> Response:
    envelope = ErrorEnvelope.of(message, "invalid_request_error", param=param)
    return Response(envelope.to_json_bytes(), status_code=status, media_type="application/json")
