"""ScriptedUpstream: an OpenAI-compatible server whose behaviour tests script per request.

Run it as a real HTTP server (`python -m proxy.fakes.upstream --port 8000`) or mount the ASGI
app in a test's uvicorn thread. Behaviour comes from a queue of `Behaviour`s (one is taken per
inference request) or the default; both can be set in-process or with
`POST /_fake/script {"default": {...}, "queue": [{...}, ...]}`. `GET /_fake/stats` reports
requests seen, cancelled (client went away) and completed, and the last request bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses
import json
import re
import time
from typing import Any

from pydantic import BaseModel, ConfigDict
from starlette.types import Receive, Scope, Send


class Behaviour(BaseModel):
    """How the fake answers one request."""

    model_config = ConfigDict(extra="forbid")

    status: int = 200
    delay_s: float = 0.0  # before the status line
    chunk_delay_s: float = 0.0  # between streamed chunks
    tokens: int = 5  # completion tokens (one word each)
    report_usage: bool = True
    drop_after_chunks: int | None = None  # abort the connection mid-stream
    error_message: str = "scripted failure"
    finish_reason: str = "length"
    content: str | None = None  # answer exactly this text (streamed word by word)
    tool_call: dict[str, str] | None = None  # {"name", "arguments"}: call a tool instead


@dataclasses.dataclass
class FakeStats:
    """What the fake has seen."""

    requests: int = 0
    completed: int = 0
    cancelled: int = 0
    dropped: int = 0
    active: int = 0
    max_active: int = 0  # most requests it held at once (fleet-wide limits are checked on it)
    cancelled_at: list[float] = dataclasses.field(default_factory=list)
    bodies: collections.deque[dict[str, Any]] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=50)
    )


class _Dropped(Exception):
    """Raised inside the app to make the server abort the connection."""


class ScriptedUpstream:
    """The ASGI app. `models` are the names `/v1/models` lists.

    `directive_tokens` maps a directive text to the number of tokens answered when a request
    carries it (so levels differ, like a real model's answers). A request for one of
    `judge_models` is answered like a judge: "Best: N" for the shortest answer in the prompt
    (or the longest, with `judge_prefers="longest"`; with `"marked"`, the longest for an
    instruction that contains "[thorough]", else the shortest); asked for `logprobs`, the
    number alone, with the answer labels' log-probabilities.
    """

    def __init__(self, models: tuple[str, ...] = ("fake-model",), name: str = "fake", *,
                 directive_tokens: dict[str, int] | None = None,
                 judge_models: tuple[str, ...] = (), judge_prefers: str = "shortest") -> None:
        self.models = models + judge_models
        self.name = name
        self.directive_tokens = directive_tokens or {}
        self.judge_models = judge_models
        self.judge_prefers = judge_prefers
        self.default = Behaviour()
        self.queue: collections.deque[Behaviour] = collections.deque()
        self.stats = FakeStats()

    def script(self, *behaviours: Behaviour, default: Behaviour | None = None) -> None:
        """Queue behaviours for the next requests (and optionally replace the default)."""
        self.queue.extend(behaviours)
        if default is not None:
            self.default = default

    def reset(self) -> None:
        """Forget the script and the counters."""
        self.queue.clear()
        self.default = Behaviour()
        self.stats = FakeStats()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch by path."""
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path, method = scope["path"], scope["method"]
        if method == "GET" and path == "/v1/models":
            data = [{"id": m, "object": "model", "created": 0, "owned_by": self.name}
                    for m in self.models]
            return await _json(send, 200, {"object": "list", "data": data})
        if path == "/_fake/stats":
            stats = dataclasses.asdict(self.stats)
            stats["bodies"] = list(self.stats.bodies)
            return await _json(send, 200, stats)
        if method == "POST" and path == "/_fake/script":
            body = json.loads(await _body(receive))
            self.script(*(Behaviour(**b) for b in body.get("queue", [])),
                        default=Behaviour(**body["default"]) if "default" in body else None)
            return await _json(send, 200, {"queued": len(self.queue)})
        if method == "POST" and path == "/_fake/reset":
            self.reset()
            return await _json(send, 200, {"reset": True})
        endpoint = {"/v1/chat/completions": "chat", "/v1/completions": "completions",
                    "/v1/embeddings": "embeddings"}.get(path)
        if endpoint is None or method != "POST":
            return await _json(send, 404, _error("not found", "invalid_request_error"))
        request = json.loads(await _body(receive))
        self.stats.bodies.append(request)
        behaviour = self.queue.popleft() if self.queue else self.default
        self.stats.requests += 1
        self.stats.active += 1
        self.stats.max_active = max(self.stats.max_active, self.stats.active)
        try:
            await self._answer(endpoint, request, behaviour, receive, send)
        except _Dropped:
            self.stats.dropped += 1
            raise
        except asyncio.CancelledError:
            self._cancelled()
            raise
        finally:
            self.stats.active -= 1

    def _cancelled(self) -> None:
        self.stats.cancelled += 1
        self.stats.cancelled_at.append(time.monotonic())

    async def _answer(self, endpoint: str, request: dict[str, Any], behaviour: Behaviour,
                      receive: Receive, send: Send) -> None:
        if behaviour.delay_s and not await _sleep_unless_gone(behaviour.delay_s, receive):
            self._cancelled()
            return
        if behaviour.status != 200:
            kind = "server_error" if behaviour.status >= 500 else "invalid_request_error"
            return await _json(send, behaviour.status, _error(behaviour.error_message, kind))
        model = request.get("model", "fake-model")
        prompt_tokens = _prompt_tokens(request)
        if endpoint == "embeddings":
            inputs = request.get("input")
            items = inputs if isinstance(inputs, list) else [inputs]
            data = [{"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), 0.2, 0.3]}
                    for i in range(len(items))]
            usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
            return await _json(send, 200, {"object": "list", "data": data, "model": model,
                                           "usage": usage})
        if model in self.judge_models:
            return await self._judge(request, model, send)
        words = ([f"tok{i}" for i in range(self._tokens(request, behaviour))]
                 if behaviour.content is None else behaviour.content.split(" "))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                 "total_tokens": prompt_tokens + len(words)}
        if request.get("stream"):
            return await self._stream(endpoint, model, words, usage, request, behaviour,
                                      receive, send)
        text = " ".join(words)
        choice: dict[str, Any] = {"index": 0, "finish_reason": behaviour.finish_reason,
                                  "logprobs": None}
        if endpoint == "chat" and behaviour.tool_call is not None:
            choice |= {"finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None, "tool_calls": [_tool_call(behaviour)]}}
        elif endpoint == "chat":
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        body: dict[str, Any] = {
            "id": "cmpl-fake", "object": "chat.completion" if endpoint == "chat" else
            "text_completion", "created": int(time.time()), "model": model, "choices": [choice],
        }
        if behaviour.report_usage:
            body["usage"] = usage
        self.stats.completed += 1
        await _json(send, 200, body)

    def _tokens(self, request: dict[str, Any], behaviour: Behaviour) -> int:
        text = json.dumps(request.get("messages") or request.get("prompt") or "")
        for directive, tokens in sorted(self.directive_tokens.items(), key=lambda d: -len(d[0])):
            if directive in text:
                return tokens
        return behaviour.tokens

    async def _judge(self, request: dict[str, Any], model: str, send: Send) -> None:
        prompt = request["messages"][-1]["content"]
        answers = re.findall(r"Answer (\d+):\n<<<\n(.*?)\n>>>", prompt, re.DOTALL)
        longest = self.judge_prefers == "longest" or (
            self.judge_prefers == "marked" and "[thorough]" in prompt)
        pick = max if longest else min
        number = pick(answers, key=lambda a: len(a[1]))[0] if answers else "1"
        self.stats.completed += 1
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop", "logprobs": None,
                                  "message": {"role": "assistant", "content": f"Best: {number}"}}
        if request.get("logprobs"):  # as OpenAI and vLLM: the labels' log-probabilities
            def entry(token: str, logprob: float) -> dict[str, Any]:
                return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

            rivals = [entry(n, -0.05 if n == number else -3.5) for n, _ in answers] or [
                entry(number, -0.05)]
            top = sorted(rivals, key=lambda r: -r["logprob"])[:request.get("top_logprobs") or 0]
            choice |= {"finish_reason": "length", "message": {"role": "assistant",
                                                             "content": number},
                       "logprobs": {"content": [entry(number, -0.05) | {"top_logprobs": top}],
                                    "refusal": None}}
        await _json(send, 200, {
            "id": "cmpl-judge", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [choice],
            "usage": {"prompt_tokens": 50, "completion_tokens": 3, "total_tokens": 53}})

    async def _stream(self, endpoint: str, model: str, words: list[str], usage: dict[str, int],
                      request: dict[str, Any], behaviour: Behaviour, receive: Receive,
                      send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        chat = endpoint == "chat"
        base = {"id": "cmpl-fake", "object": "chat.completion.chunk" if chat else
                "text_completion", "created": int(time.time()), "model": model}
        events: list[dict[str, Any]] = []
        if chat:
            events.append(base | {"choices": [{"index": 0, "delta": {"role": "assistant"},
                                               "finish_reason": None}]})
        if chat and behaviour.tool_call is not None:
            call = _tool_call(behaviour)
            arguments = call["function"].pop("arguments")
            call["function"]["arguments"] = ""
            events.append(base | {"choices": [{"index": 0, "delta": {"tool_calls": [
                call | {"index": 0}]}, "finish_reason": None}]})
            for start in range(0, len(arguments), 8):  # arguments arrive in fragments
                events.append(base | {"choices": [{"index": 0, "delta": {"tool_calls": [{
                    "index": 0, "function": {"arguments": arguments[start:start + 8]}}]},
                    "finish_reason": None}]})
            events.append(base | {"choices": [{"index": 0, "delta": {},
                                               "finish_reason": "tool_calls"}]})
            words = []
        for i, word in enumerate(words):
            text = word if i == 0 else " " + word
            last = i == len(words) - 1
            choice: dict[str, Any] = {"index": 0,
                                      "finish_reason": behaviour.finish_reason if last else None}
            choice |= {"delta": {"content": text}} if chat else {"text": text}
            events.append(base | {"choices": [choice]})
        options = request.get("stream_options") or {}
        if behaviour.report_usage and options.get("include_usage"):
            events.append(base | {"choices": [], "usage": usage})
        for number, event in enumerate(events):
            if behaviour.drop_after_chunks is not None and number >= behaviour.drop_after_chunks:
                raise _Dropped("scripted connection drop")
            if number and behaviour.chunk_delay_s and not await _sleep_unless_gone(
                behaviour.chunk_delay_s, receive
            ):
                self._cancelled()
                return
            payload = b"data: " + json.dumps(event).encode() + b"\n\n"
            await send({"type": "http.response.body", "body": payload, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        self.stats.completed += 1


async def _sleep_unless_gone(seconds: float, receive: Receive) -> bool:
    """Sleep; False (early) if the client disconnects meanwhile."""
    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        await asyncio.wait_for(asyncio.shield(watcher), timeout=seconds)
    except TimeoutError:
        return True
    finally:
        watcher.cancel()
    return False


def _prompt_tokens(request: dict[str, Any]) -> int:
    text = json.dumps(request.get("messages") or request.get("prompt") or request.get("input"))
    return max(1, len(text) // 4)


def _tool_call(behaviour: Behaviour) -> dict[str, Any]:
    assert behaviour.tool_call is not None
    return {"id": "call_fake0", "type": "function",
            "function": {"name": behaviour.tool_call["name"],
                         "arguments": behaviour.tool_call.get("arguments", "{}")}}


def _error(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _json(send: Send, status: int, document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    """Serve the fake on a port."""
    import uvicorn

    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible upstream (a fake).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", action="append", help="model names to list")
    args = parser.parse_args()
    app = ScriptedUpstream(tuple(args.model or ["fake-model"]))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
