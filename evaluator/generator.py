"""Generator: how the evaluator asks for answers, always through the proxy's own serving path.

`HTTPGenerator` talks to a running proxy (for `python -m evaluator run-once`, a CronJob);
`InProcessGenerator` calls the proxy's `Serving` directly (for the scheduled job inside the
proxy). Both mark the traffic as evaluator traffic, so its ledger rows count its energy and
carbon apart from client traffic.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import json
from typing import Any

import httpx

from proxy.errors import ProxyError
from proxy.protocol.chat import ChatCompletionRequest
from proxy.protocol.completions import CompletionRequest
from proxy.protocol.responses import ResponsesRequest
from proxy.serving.service import Serving


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """One answer, or why there is none."""

    text: str | None
    request_id: str | None
    error: str | None = None
    document: dict[str, Any] | None = None  # the whole response (the judge reads logprobs)


class Generator(abc.ABC):
    """Asks for one non-streamed answer at a directive level (`off` for the judge)."""

    @abc.abstractmethod
    async def answer(self, endpoint: str, request: dict[str, Any], level: str) -> Answer:
        """The answer text of a chat, completion or Responses request."""


_PATHS = {"chat": "/chat/completions", "completions": "/completions",
          "responses": "/responses"}
_MODELS: dict[str, type[ChatCompletionRequest | CompletionRequest | ResponsesRequest]] = {
    "chat": ChatCompletionRequest, "completions": CompletionRequest,
    "responses": ResponsesRequest}


def _read(endpoint: str, body: bytes, request_id: str | None) -> Answer:
    """The answer in a response body, or why it cannot be read."""
    try:
        document = json.loads(body)
        text = _text(endpoint, document)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        return Answer(None, request_id, f"unreadable answer: {exc}")
    return Answer(text, request_id, None, document)


def _text(endpoint: str, document: dict[str, Any]) -> str:
    if endpoint == "responses":  # every output_text part of every message item
        return "".join(str(part.get("text") or "") for item in document["output"]
                       if item.get("type") == "message" for part in item.get("content") or []
                       if part.get("type") == "output_text")
    choice = document["choices"][0]
    if endpoint == "chat":
        return str(choice["message"].get("content") or "")
    return str(choice.get("text") or "")


def _plain(endpoint: str, request: dict[str, Any]) -> dict[str, Any]:
    unstreamed = {k: v for k, v in request.items() if k not in ("stream", "stream_options")}
    if endpoint == "responses":  # regenerations are never kept (captured turns are inline)
        unstreamed["store"] = False
    return unstreamed


class HTTPGenerator(Generator):
    """Through a running proxy's OpenAI API, with the master key."""

    def __init__(self, proxy_url: str, master_key: str, *, timeout_s: float = 300.0) -> None:
        self._url = proxy_url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout_s, trust_env=False)
        self._headers = {"authorization": f"Bearer {master_key}", "x-sprout-evaluator": "1"}

    async def answer(self, endpoint: str, request: dict[str, Any], level: str) -> Answer:
        """POST to /v1/chat/completions, /v1/completions or /v1/responses."""
        try:
            response = await self._client.post(
                self._url + _PATHS[endpoint], json=_plain(endpoint, request),
                headers=self._headers | {"x-sprout-directive": level})
        except httpx.HTTPError as exc:
            return Answer(None, None, f"{type(exc).__name__}: {exc}")
        request_id = response.headers.get("x-request-id")
        if response.status_code != 200:
            return Answer(None, request_id, f"HTTP {response.status_code}: {response.text[:300]}")
        return _read(endpoint, response.content, request_id)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()


class InProcessGenerator(Generator):
    """Through the proxy's `Serving` in this process (same pools, retries, ledger)."""

    def __init__(self, serving: Serving) -> None:
        self._serving = serving

    async def answer(self, endpoint: str, request: dict[str, Any], level: str) -> Answer:
        """Run the request through `Serving.serve` as the master key, marked as evaluator."""
        try:
            parsed = _MODELS[endpoint].model_validate(_plain(endpoint, request))
        except (ValueError, ProxyError) as exc:
            return Answer(None, None, f"sample no longer parses: {exc}")
        exchange = self._serving.begin(endpoint)  # type: ignore[arg-type]
        exchange.api_key_id = "evaluator"
        exchange.is_evaluator = True
        response = await self._serving.serve(exchange, parsed, _never_disconnects, level)
        body = bytes(response.body)
        if response.status_code != 200:
            return Answer(None, exchange.request_id,
                          f"HTTP {response.status_code}: {body[:300].decode(errors='replace')}")
        return _read(endpoint, body, exchange.request_id)


async def _never_disconnects() -> dict[str, Any]:
    await asyncio.Event().wait()
    return {"type": "http.disconnect"}  # pragma: no cover - never reached
