"""ResponsesRelay: a Responses request's conversation, its upstream form per pool, its storage.

A pool that lists `responses` in its endpoints is sent the request itself and its answer
comes back byte for byte; any other pool (chat only) gets the chat translation
(`proxy/protocol/responses_chat.py`) and its answer is translated back. Earlier turns
(`previous_response_id`) come from the proxy's own store, so a conversation can continue on
any pool; a previous id the proxy never stored is left to a native pool to resolve.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import time
from typing import Any

from pydantic import ValidationError

from proxy.accounting.responses_store import ResponseStore, StoredResponse
from proxy.backends.base import UpstreamRequest
from proxy.errors import InvalidRequest, UpstreamFailed
from proxy.pools.registry import Route
from proxy.protocol.responses import InputItem, ResponseProbe, ResponsesRequest
from proxy.protocol.responses_chat import (
    ChatBody,
    ChatStreamTranslator,
    ResponseFrame,
    check_translatable,
    response_from_chat,
    to_chat,
)
from proxy.protocol.streaming import Usage
from proxy.serving.responses_taps import ResponsesTap, TranslatingTap, ledger_usage

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class Turn:
    """A request as its client sent it, and the earlier turns it continues (None: unknown)."""

    client: ResponsesRequest
    history: list[InputItem] | None
    previous_response_id: str | None
    api_key_id: str | None
    native_pool: str | None = None  # the native pool that answered the previous response

    def expanded(self) -> ResponsesRequest:
        """The request with its earlier turns inlined: self-contained, never stored."""
        request = self.client
        if self.history:
            request = request.model_copy(update={
                "input": [*self.history, *request.items()], "previous_response_id": None})
        return request.model_copy(update={"store": False})


@dataclasses.dataclass(frozen=True, slots=True)
class Answer:
    """A unary answer as the client gets it, and what the ledger and the store need of it."""

    body: bytes
    usage: Usage | None
    output_chars: int
    finish_reason: str | None
    response_id: str | None


class ResponsesPlan:
    """One attempt on one pool: native pass-through or chat translation."""

    def __init__(self, relay: ResponsesRelay, turn: Turn, request: ResponsesRequest,
                 route: Route, *, stream: bool) -> None:
        self._relay = relay
        self._turn = turn
        self.route = route
        self.native = "responses" in route.pool.config.endpoints
        history = turn.history
        if self.native:
            payload = request.model_copy(update={"model": route.upstream_model})
            # The pool that answered the previous turn holds it itself: the request goes as
            # it came. Any other pool is given the stored conversation inline.
            holds_it = history is None or turn.native_pool == route.pool.name
            if turn.previous_response_id is not None and history is not None and not holds_it:
                payload = payload.model_copy(update={
                    "input": [*history, *request.items()], "previous_response_id": None})
            self.upstream = UpstreamRequest("responses", payload, stream=stream)
            self._frame: ResponseFrame | None = None
            return
        if turn.previous_response_id is not None and history is None:
            raise relay.unknown_previous(turn.previous_response_id)
        check_translatable(request)
        self._frame = ResponseFrame(
            response_id=relay.new_id("resp"), created_at=int(time.time()),
            model=request.model, request=turn.client,
            previous_response_id=turn.previous_response_id)
        chat = to_chat(request, history or [], route.upstream_model)
        self.upstream = UpstreamRequest("chat", chat, stream=stream)

    def answer(self, status: int, body: bytes) -> Answer:
        """The client's body for an upstream answer (translated back if need be)."""
        if self._frame is None or status >= 400:  # errors share OpenAI's envelope both ways
            try:
                probe: ResponseProbe | None = ResponseProbe.model_validate_json(body)
            except ValidationError:
                probe = None
            return Answer(body, ledger_usage(probe), probe.output_chars() if probe else 0,
                          probe.finish_reason() if probe else None,
                          probe.id if probe and status < 400 else None)
        try:
            chat = ChatBody.model_validate_json(body)
        except ValidationError as exc:
            raise UpstreamFailed("the chat upstream answered something that is not a chat "
                                 "completion", code="upstream_bad_response") from exc
        document = response_from_chat(chat, self._frame, self._relay.new_id)
        probe = ResponseProbe.model_validate(document)
        usage = chat.usage
        return Answer(_json_bytes(document),
                      Usage(prompt_tokens=usage.prompt_tokens,
                            completion_tokens=usage.completion_tokens,
                            total_tokens=usage.total_tokens) if usage else None,
                      probe.output_chars(), probe.finish_reason(), self._frame.response_id)

    def tap(self) -> ResponsesTap | TranslatingTap:
        """The stream tap for this attempt."""
        if self._frame is None:
            return ResponsesTap()
        return TranslatingTap(ChatStreamTranslator(self._frame, self._relay.new_id))

    async def keep(self, response_json: str | None, request_id: str) -> None:
        """Store the finished response if its client asked for it and storing is on."""
        relay = self._relay
        if relay.store is None or response_json is None or not self._turn.client.stores:
            return
        try:
            probe = ResponseProbe.model_validate_json(response_json)
        except ValidationError:
            return
        if probe.id is None or probe.status == "failed":
            return
        turn = self._turn
        history = None if turn.history is None and turn.previous_response_id else [
            item.model_dump(exclude_unset=True, by_alias=True) for item in turn.history or []]
        stored = StoredResponse(
            response_id=probe.id, api_key_id=turn.api_key_id, model=turn.client.model,
            pool=self.route.pool.name, native=self.native,
            history=history, input_items=relay.input_items(turn.client),
            response_json=response_json)
        try:
            await relay.store.put(stored, request_id)
        except Exception:  # the answer still goes out; only its continuation is lost
            log.exception("could not store response %s", probe.id)


class ResponsesRelay:
    """Built once; `store` is None when storing is off (PROXY_RESPONSES_STORE=false)."""

    def __init__(self, store: ResponseStore | None, rng: random.Random) -> None:
        self.store = store
        self._rng = rng

    def new_id(self, prefix: str) -> str:
        """An OpenAI-style id (`resp_…`, `msg_…`, `fc_…`), 192 random bits."""
        return f"{prefix}_{self._rng.getrandbits(192):048x}"

    async def turn(self, request: ResponsesRequest, api_key_id: str | None) -> Turn:
        """The request with the conversation it continues, read from the store."""
        previous = request.previous_response_id
        if previous is None or self.store is None:
            return Turn(request, [] if previous is None else None, previous, api_key_id)
        stored = await self.store.find(previous)
        if stored is not None and stored.api_key_id != api_key_id:
            # Another key's: never continued, not even by a native pool that holds it too.
            raise InvalidRequest(f"Previous response with id '{previous}' not found.",
                                 code="previous_response_not_found",
                                 param="previous_response_id")
        conversation = stored.conversation() if stored is not None else None
        if conversation is None:
            return Turn(request, None, previous, api_key_id)
        try:
            history = [InputItem.model_validate(item) for item in conversation]
        except ValidationError:  # a native upstream's item the proxy cannot re-read
            return Turn(request, None, previous, api_key_id)
        return Turn(request, history, previous, api_key_id,
                    stored.pool if stored is not None and stored.native else None)

    def unknown_previous(self, response_id: str) -> InvalidRequest:
        """The 400 for a previous response a chat-only pool cannot continue."""
        if self.store is None:
            return InvalidRequest(
                "previous_response_id needs stored responses, and storing is off on this "
                "proxy (PROXY_RESPONSES_STORE=false); send the whole conversation in 'input'.",
                code="responses_store_disabled", param="previous_response_id")
        return InvalidRequest(f"Previous response with id '{response_id}' not found.",
                              code="previous_response_not_found",
                              param="previous_response_id")

    def input_items(self, request: ResponsesRequest) -> list[dict[str, Any]]:
        """The request's input as stored items: each with an id, message text as parts."""
        items = []
        for item in request.items():
            document = item.model_dump(exclude_unset=True, by_alias=True)
            document.setdefault("type", "message")
            if document["type"] == "message":
                if isinstance(document.get("content"), str):
                    kind = "output_text" if document.get("role") == "assistant" else "input_text"
                    document["content"] = [{"type": kind, "text": document["content"]}]
                document.setdefault("status", "completed")
            document.setdefault("id", self.new_id(_ID_PREFIX.get(document["type"], "item")))
            items.append(document)
        return items


_ID_PREFIX = {"message": "msg", "function_call": "fc", "function_call_output": "fco",
              "reasoning": "rs"}


def _json_bytes(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
