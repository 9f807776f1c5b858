"""The worker's OpenAI-compatible HTTP API over one `Engine`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from proxy.api.body import parse_body
from proxy.energy.base import EnergyMeter
from proxy.energy.null import NullMeter
from proxy.errors import InvalidRequest, ProxyError
from proxy.protocol.chat import ChatCompletionRequest
from proxy.protocol.completions import CompletionRequest, EmbeddingRequest
from proxy.protocol.errors import ErrorEnvelope
from proxy.serving.exchange import error_body, wait_for_disconnect
from worker.engine import Engine, Generation, Sampling
from worker.kv_store import KVFull, KVStore
from worker.meter import device_identity, energy_router
from worker.pd_protocol import (
    KVAddress,
    kv_router,
    prefill_answer,
    pull,
    transfer_params,
    wants_prefill_only,
    wants_pull,
)
from worker.text import visible

MAX_TOKENS_CEILING = 2048  # an answer's length when the request names none (`--max-tokens-ceiling`)
MAX_TOP_LOGPROBS = 20  # as OpenAI's API


def create_app(engine: Engine, *, max_tokens_ceiling: int = MAX_TOKENS_CEILING,
               meter: EnergyMeter | None = None, device_id: str | None = None,
               kv_store: KVStore | None = None, kv_address: KVAddress | None = None) -> FastAPI:
    """Routes for chat, completions, embeddings and models, and the device's energy.

    Every response names the device that computed it (`x-sprout-device`), the same id as the
    energy document's, so the proxy files the request's row and the counter's samples under
    one device even when several workers answer behind one URL.

    `max_tokens` / `max_completion_tokens` are honoured up to the model's context; without
    them an answer runs to its end-of-sequence token, the context, or `max_tokens_ceiling`
    (then `finish_reason: "length"`), whichever comes first.

    Requests carrying vLLM's `kv_transfer_params` take part in a prefill/decode split across
    workers (`worker/pd_protocol.py`): a prefill leg holds its prompt's cache in `kv_store`
    for decode workers to pull from `kv_address`.
    """
    store = kv_store or KVStore()
    address = kv_address or KVAddress("127.0.0.1", 8081)
    app = FastAPI(title="sprout-worker", lifespan=_closing(engine))
    app.add_exception_handler(ProxyError, _proxy_error)
    device = device_id or device_identity(engine.devices)
    served = {"requests": 0}
    context = engine.context_limit
    if engine.batcher is not None:
        context = min(context, engine.batcher.kv_cache_tokens)

    @app.middleware("http")
    async def device_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        if "x-sprout-decoding" not in response.headers:  # a P/D leg names its own
            response.headers["x-sprout-decoding"] = engine.decoding
        response.headers["x-sprout-device"] = device
        if request.url.path.startswith("/v1/") and request.method == "POST":
            served["requests"] += 1
        return response

    app.include_router(energy_router(meter or NullMeter(), device))
    app.include_router(kv_router(store))

    @app.get("/health")
    async def health() -> Response:
        healthy = engine.batcher is None or engine.batcher.revive()
        return JSONResponse(status_code=200 if healthy else 503, content={
            "status": "ok" if healthy else "batch_down", "model": engine.served_name,
            "device": engine.device, "device_id": device, "decoding": engine.decoding,
            "batching": engine.batching, "context_tokens": context,
            "batch": None if engine.batcher is None else {
                "active": engine.batcher.active, "peak": engine.batcher.peak_active,
                "restarts": engine.batcher.restarts},
            "max_tokens_ceiling": max_tokens_ceiling, "served_requests": served["requests"],
            "kv": store.stats()})

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": engine.served_name, "object": "model", "created": 0,
                "owned_by": "sprout-worker", "max_model_len": context}
        return {"object": "list", "data": [card]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = parse_body(ChatCompletionRequest, await request.body())
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        extra = body.model_extra or {}
        top_logprobs = _top_logprobs(extra)
        if top_logprobs is not None and body.is_stream:
            return _error(400, "this worker returns logprobs on unstreamed requests only",
                          "logprobs")
        if top_logprobs is not None and engine.decoding != "standard":
            return _error(400, f"logprobs are not available with {engine.decoding} decoding",
                          "logprobs")
        prompt = engine.chat_prompt(messages)
        limit = body.max_completion_tokens or body.max_tokens
        param = "max_completion_tokens" if body.max_completion_tokens else "max_tokens"
        sampling = _sampling(body, prompt, limit, param, context, max_tokens_ceiling,
                             top_logprobs)
        return await _leg(engine, store, address, request, "chat", body.model, prompt,
                          sampling, body.is_stream, _include_usage(body), extra)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        body = parse_body(CompletionRequest, await request.body())
        if not isinstance(body.prompt, str) and not _is_token_list(body.prompt):
            return _error(400, "this worker takes one prompt per request", "prompt")
        if (body.model_extra or {}).get("logprobs") not in (None, 0, False):
            return _error(400, "this worker returns logprobs on chat completions only",
                          "logprobs")
        prompt = engine.text_prompt(body.prompt)  # type: ignore[arg-type]
        if body.max_tokens == 0:  # OpenAI: echo-style request for no new tokens
            return _error(400, "max_tokens must be at least 1", "max_tokens")
        sampling = _sampling(body, prompt, body.max_tokens, "max_tokens", context,
                             max_tokens_ceiling, None)
        return await _leg(engine, store, address, request, "completions", body.model, prompt,
                          sampling, body.is_stream, _include_usage(body), body.model_extra or {})

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


def _closing(engine: Engine) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            engine.close()

    return lifespan


def _top_logprobs(extra: dict[str, Any]) -> int | None:
    """How many rival tokens to report per position (None: no logprobs asked)."""
    wanted, top = extra.get("logprobs"), extra.get("top_logprobs")
    if wanted in (None, False):
        if top not in (None, 0):
            raise InvalidRequest("top_logprobs needs logprobs: true", param="top_logprobs")
        return None
    if wanted is not True:
        raise InvalidRequest("logprobs must be a boolean", param="logprobs")
    if top is None:
        return 0
    if not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP_LOGPROBS:
        raise InvalidRequest(f"top_logprobs must be an integer from 0 to {MAX_TOP_LOGPROBS}",
                          param="top_logprobs")
    return top


def _sampling(body: ChatCompletionRequest | CompletionRequest, prompt: list[int],
              limit: int | None, param: str, context: int, ceiling: int,
              top_logprobs: int | None) -> Sampling:
    room = context - len(prompt)
    if room < 1:
        raise InvalidRequest(f"the prompt is {len(prompt)} tokens; this model's context is "
                          f"{context} tokens", param="messages" if param != "max_tokens"
                          or isinstance(body, ChatCompletionRequest) else "prompt")
    if limit is not None and limit > room:
        raise InvalidRequest(f"{param} is {limit}, but the prompt ({len(prompt)} tokens) leaves "
                          f"{room} of this model's {context}-token context", param=param)
    if (getattr(body, "n", None) or 1) > 1:
        raise InvalidRequest("this worker generates one choice per request (n=1)", param="n")
    extra = body.model_extra or {}
    stop = extra.get("stop")
    if stop is not None and not (isinstance(stop, str) or (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop))):
        raise InvalidRequest("stop must be a string or a list of strings", param="stop")
    stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
    temperature = 1.0 if body.temperature is None else float(body.temperature)
    seed = extra.get("seed")
    return Sampling(
        max_new_tokens=limit if limit is not None else min(ceiling, room),
        temperature=temperature,
        top_p=1.0 if body.top_p is None else float(body.top_p),
        stop=stops,
        seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        top_logprobs=top_logprobs,
    )


def _include_usage(body: ChatCompletionRequest | CompletionRequest) -> bool:
    return bool(body.stream_options and body.stream_options.include_usage)


def _is_token_list(prompt: object) -> bool:
    return isinstance(prompt, list) and all(isinstance(item, int) for item in prompt)


async def _leg(engine: Engine, store: KVStore, address: KVAddress, request: Request, kind: str,
               model: str, prompt: list[int], sampling: Sampling, stream: bool,
               include_usage: bool, extra: dict[str, Any]) -> Response:
    """A plain request, or one leg of a prefill/decode split (`kv_transfer_params`)."""
    params = transfer_params(extra)
    if wants_prefill_only(params):
        try:
            generation, entry = await asyncio.to_thread(engine.prefill_remote, prompt,
                                                        sampling, store)
        except KVFull as exc:
            return _error(503, str(exc), None, code="kv_store_full")
        if entry is not None and await request.is_disconnected():
            store.release(entry.entry_id)  # the router went away: nobody will pull it
            return Response(status_code=499)
        document = _document(engine, kind, model, generation)
        document["kv_transfer_params"] = prefill_answer(address, entry)
        return JSONResponse(document, headers={
            "x-sprout-decoding": "prefill", "x-sprout-kv-bytes": str(
                entry.size_bytes if entry is not None else 0)})
    if wants_pull(params) and len(prompt) > 1:
        assert params is not None
        pulled = await pull(params, prompt)
        headers = {"x-sprout-kv": pulled.note, "x-sprout-kv-bytes": str(pulled.size_bytes),
                   "x-sprout-decoding": "decode" if pulled.layers is not None else
                   engine.decoding}
        layers = pulled.layers
        if layers is not None:
            async def from_cache(ids: list[int], how: Sampling,
                                 on_token: Any = lambda _id: None) -> Generation:
                return await engine.run_pulled(ids, how, layers, on_token=on_token)

            return await _respond(engine, request, kind, model, prompt, sampling, stream,
                                  include_usage, run=from_cache, headers=headers)
        return await _respond(engine, request, kind, model, prompt, sampling, stream,
                              include_usage, headers=headers)
    return await _respond(engine, request, kind, model, prompt, sampling, stream, include_usage)


async def _respond(engine: Engine, request: Request, kind: str, model: str, prompt: list[int],
                   sampling: Sampling, stream: bool, include_usage: bool, *,
                   run: Any = None, headers: dict[str, str] | None = None) -> Response:
    generate = run or engine.run
    if stream:
        return StreamingResponse(
            _events(engine, kind, model, prompt, sampling, include_usage, generate),
            media_type="text/event-stream", headers=headers,
        )
    job = asyncio.ensure_future(generate(prompt, sampling))
    watch = asyncio.ensure_future(wait_for_disconnect(request.receive))
    await asyncio.wait((job, watch), return_when=asyncio.FIRST_COMPLETED)
    watch.cancel()
    if not job.done():
        job.cancel()  # the client left: stop generating within one token
        with contextlib.suppress(BaseException):
            await job
        return Response(status_code=499)
    generation: Generation = job.result()
    return JSONResponse(_document(engine, kind, model, generation), headers=headers)


def _document(engine: Engine, kind: str, model: str, generation: Generation) -> dict[str, Any]:
    text = generation.text if generation.text is not None else engine.decode(
        generation.completion_ids)
    choice: dict[str, Any] = {"index": 0, "finish_reason": generation.finish_reason,
                              "logprobs": _logprobs_document(engine, generation)}
    if kind == "chat":
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {
        "id": _id(kind), "object": "chat.completion" if kind == "chat" else "text_completion",
        "created": int(time.time()), "model": model, "choices": [choice],
        "usage": _usage(generation),
    }


def _logprobs_document(engine: Engine, generation: Generation) -> dict[str, Any] | None:
    """OpenAI's `choices[].logprobs` for chat: each token, its log-probability, its rivals."""
    if generation.logprobs is None:
        return None

    def entry(token_id: int, logprob: float) -> dict[str, Any]:
        text = engine.token_text(token_id)
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    return {"content": [entry(item.token_id, item.logprob) | {
        "top_logprobs": [entry(i, v) for i, v in item.top]} for item in generation.logprobs],
        "refusal": None}


async def _events(engine: Engine, kind: str, model: str, prompt: list[int], sampling: Sampling,
                  include_usage: bool, generate: Any) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[int | None] = asyncio.Queue()

    async def run() -> Generation:
        try:
            return await generate(prompt, sampling, on_token=queue.put_nowait)
        finally:
            queue.put_nowait(None)

    job = asyncio.ensure_future(run())
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
        text = sent = ""
        prefix_at = read_at = 0  # incremental detokenising, as vLLM and TGI do it
        while (token := await queue.get()) is not None:
            if token in engine.eos_ids:
                continue
            ids.append(token)
            before = engine.decode(ids[prefix_at:read_at])
            now = engine.decode(ids[prefix_at:])
            if now.endswith("\ufffd") or len(now) <= len(before):
                continue  # an incomplete multi-byte character: wait for the next token
            text += now[len(before):]
            prefix_at, read_at = read_at, len(ids)
            shown = visible(text, sampling.stop)
            if len(shown) > len(sent) and shown.startswith(sent):
                delta, sent = shown[len(sent):], shown
                piece = {"delta": {"content": delta}} if chat else {"text": delta}
                yield _sse(base | {"choices": [{"index": 0, "finish_reason": None} | piece]}
                           | usage_field)
        try:
            generation = await job
        except ProxyError as exc:  # headers are sent: the error goes in the stream, as OpenAI's
            yield b"data: " + error_body(exc) + b"\n\n"
            return
        final = generation.text if generation.text is not None else engine.decode(
            generation.completion_ids)
        if len(final) > len(sent) and final.startswith(sent):  # the tail held back for stops
            piece = {"delta": {"content": final[len(sent):]}} if chat else {
                "text": final[len(sent):]}
            yield _sse(base | {"choices": [{"index": 0, "finish_reason": None} | piece]}
                       | usage_field)
        last = {"delta": {}} if chat else {"text": ""}
        yield _sse(base | {"choices": [{"index": 0, "finish_reason": generation.finish_reason}
                                       | last]} | usage_field)
        if include_usage:
            yield _sse(base | {"choices": [], "usage": _usage(generation)})
        yield b"data: [DONE]\n\n"
    finally:
        job.cancel()  # client gone or finished: never leave a generation running
        with contextlib.suppress(BaseException):
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


def _error(status: int, message: str, param: str | None = None,
           code: str | None = None) -> Response:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    envelope = ErrorEnvelope.of(message, kind, param=param, code=code)
    return Response(envelope.to_json_bytes(), status_code=status, media_type="application/json")
