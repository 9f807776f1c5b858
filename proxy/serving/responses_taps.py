"""Stream taps for the Responses API: a native event stream watched, or a chat stream translated.

Both keep the `SSETap` surface that `TappedStream` reads (TTFT at the first output delta,
usage, finish, whether the answer is complete) and hold the final response object, which is
stored before the event that completes the stream goes out.
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import ValidationError

from proxy.protocol.responses import ResponseProbe, StreamEventProbe
from proxy.protocol.responses_chat import ChatBody, ChatStreamTranslator
from proxy.protocol.streaming import Usage
from proxy.serving.stream_tap import event_data, next_boundary

# Events that carry generated output (text, reasoning, call arguments, refusals).
_OUTPUT_DELTAS = frozenset({
    "response.output_text.delta", "response.reasoning_text.delta",
    "response.reasoning_summary_text.delta", "response.function_call_arguments.delta",
    "response.refusal.delta", "response.custom_tool_call_input.delta",
})
_ENDINGS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def ledger_usage(probe: ResponseProbe | None) -> Usage | None:
    """Responses usage in the ledger's terms (input → prompt, output → completion)."""
    if probe is None or probe.usage is None:
        return None
    usage = probe.usage
    return Usage(prompt_tokens=usage.input_tokens, completion_tokens=usage.output_tokens,
                 total_tokens=usage.total_tokens or usage.input_tokens + usage.output_tokens)


class _Events:
    """Splits bytes into whole SSE events."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def split(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        events: list[bytes] = []
        start = 0
        while True:
            index, width = next_boundary(self._buffer, start)
            if index == -1:
                break
            events.append(bytes(self._buffer[start:index + width]))
            start = index + width
        if start:
            del self._buffer[:start]
        return events

    def rest(self) -> bytes:
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest if rest.strip() else b""


class ResponsesTap:
    """Watches a native `/v1/responses` stream; every byte is forwarded unchanged."""

    def __init__(self) -> None:
        self._events = _Events()
        self.first_token_at: float | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.token_events = 0
        self.saw_done = False
        self.error_payload: bytes | None = None
        self.final_json: str | None = None
        self.end_offset: int | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Forwardable bytes for the complete events now buffered."""
        out = bytearray()
        for event in self._events.split(chunk):
            done = self.saw_done
            self._watch(event)
            if self.saw_done and not done:
                self.end_offset = len(out)
            out += event
        return bytes(out)

    def finish(self) -> bytes:
        """A last event without its blank line."""
        rest = self._events.rest()
        if rest:
            self._watch(rest)
            return rest if rest.endswith(b"\n\n") else rest + b"\n\n"
        return b""

    def failure(self, message: str) -> bytes:
        """An `error` event for an upstream that failed mid-stream."""
        document = {"type": "error", "code": "server_error", "message": message, "param": None}
        return b"event: error\ndata: " + json.dumps(document).encode() + b"\n\n"

    def _watch(self, event: bytes) -> None:
        data = event_data(event)
        if data is None or data == b"[DONE]":
            return
        try:
            probe = StreamEventProbe.model_validate_json(data)
        except ValidationError:
            return  # not ours to judge: forwarded as it came
        if probe.type in _OUTPUT_DELTAS:
            self.token_events += 1
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
        elif probe.type == "error":
            self.error_payload = data
        elif probe.type in _ENDINGS and probe.response is not None:
            self.usage = ledger_usage(probe.response)
            self.finish_reason = probe.response.finish_reason()
            if probe.type == "response.failed":
                self.error_payload = json.dumps(probe.response.error or {}).encode()
            document: dict[str, Any] = json.loads(data)
            self.final_json = json.dumps(document.get("response"))
            self.saw_done = True


class TranslatingTap:
    """A chat stream in, the Responses event sequence out (`ChatStreamTranslator`)."""

    def __init__(self, translator: ChatStreamTranslator) -> None:
        self._translator = translator
        self._events = _Events()
        self._started = False
        self.first_token_at: float | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.token_events = 0
        self.saw_done = False
        self.error_payload: bytes | None = None
        self.final_json: str | None = None
        self.end_offset: int | None = None

    def feed(self, chunk: bytes) -> bytes:
        """The translated events for the complete upstream events now buffered."""
        out = bytearray()
        if not self._started:
            self._started = True
            out += self._translator.start()
        for event in self._events.split(chunk):
            done = self.saw_done
            translated = self._translate(event)
            if self.saw_done and not done:
                self.end_offset = len(out)
            out += translated
        return bytes(out)

    def finish(self) -> bytes:
        """The closing events when the upstream ended without `[DONE]`."""
        rest = self._events.rest()
        out = bytearray(self._translate(rest) if rest else b"")
        if not self.saw_done:
            out += self._end(self._translator.finish())
        return bytes(out)

    def failure(self, message: str) -> bytes:
        """The upstream failed mid-stream: `error`, then `response.failed`."""
        self.saw_done = True
        out = self._translator.failure(message)
        self.final_json = None  # a failed response is not kept
        return out

    def _translate(self, event: bytes) -> bytes:
        data = event_data(event)
        if data is None or self.saw_done:
            return b""
        if data == b"[DONE]":
            out = self._end(self._translator.finish())
            self.saw_done = True
            return out
        try:
            chunk = ChatBody.model_validate_json(data)
        except ValidationError:
            return b""  # not a chat chunk: nothing a Responses client could read
        if chunk.error is not None:
            self.error_payload = data
            self.saw_done = True
            return self._translator.failure(str(chunk.error.get("message") or chunk.error))
        before = self._translator.output_deltas
        out = self._translator.feed(chunk)
        if self._translator.output_deltas > before:
            self.token_events += self._translator.output_deltas - before
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
        if self._translator.finish_reason:
            self.finish_reason = self._translator.finish_reason
        return out

    def _end(self, events: bytes) -> bytes:
        translator = self._translator
        chat_usage = translator.usage
        if chat_usage is not None:
            self.usage = Usage(prompt_tokens=chat_usage.prompt_tokens,
                               completion_tokens=chat_usage.completion_tokens,
                               total_tokens=chat_usage.total_tokens)
        final = translator.final
        if final is not None and final.get("status") != "failed":
            self.final_json = json.dumps(final)
        return events
