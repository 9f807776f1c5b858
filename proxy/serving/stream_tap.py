"""SSETap: watches an upstream event stream as it passes, recording TTFT, usage and finish."""

from __future__ import annotations

import time
from typing import Protocol

from pydantic import ValidationError

from proxy.protocol.errors import ErrorEnvelope
from proxy.protocol.streaming import ResponseProbe, Usage

_DONE = b"[DONE]"


def next_boundary(buffer: bytes | bytearray, start: int) -> tuple[int, int]:
    """Index and length of the next blank-line event separator, or (-1, 0)."""
    lf = buffer.find(b"\n\n", start)
    crlf = buffer.find(b"\r\n\r\n", start)
    if crlf != -1 and (lf == -1 or crlf < lf):
        return crlf, 4
    return (lf, 2) if lf != -1 else (-1, 0)


def event_data(event: bytes) -> bytes | None:
    """The joined `data:` lines of one event (None for comments / other fields only)."""
    if event.startswith(b"data: ") and b"\n" not in event:  # the usual one-line event
        return event[6:]
    parts = [
        line[5:].lstrip(b" ")
        for line in event.splitlines()
        if line.startswith(b"data:")
    ]
    return b"\n".join(parts) if parts else None


class StreamTap(Protocol):
    """What `TappedStream` reads from a tap: bytes to forward and the stream's outcome."""

    first_token_at: float | None
    usage: Usage | None
    finish_reason: str | None
    token_events: int
    saw_done: bool  # the event that completes the answer has been seen
    error_payload: bytes | None
    # Where, in the bytes the last `feed` returned, the completing event starts (None: the
    # whole of them): what comes before it goes out without waiting for the row or the store.
    end_offset: int | None

    def feed(self, chunk: bytes) -> bytes:
        """Forwardable bytes for the upstream bytes so far."""

    def finish(self) -> bytes:
        """What is left to forward once the upstream ended."""

    def failure(self, message: str) -> bytes:
        """The bytes that tell the client the upstream failed mid-stream."""


class SSETap:
    """Feed raw upstream bytes; get back the bytes to forward, whole events only.

    Events are forwarded unchanged, except the usage-only chunk that the proxy forced upstream
    (`stream_options.include_usage`), which is removed when the client did not ask for it.
    """

    def __init__(self, *, client_wants_usage: bool) -> None:
        self._client_wants_usage = client_wants_usage
        self._buffer = bytearray()
        self.first_token_at: float | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        self.token_events = 0
        self.saw_done = False
        self.error_payload: bytes | None = None
        self.end_offset: int | None = None

    def feed(self, chunk: bytes) -> bytes:
        """Forwardable bytes for the complete events now buffered.

        Usually a chunk is whole events and every one is kept: then the chunk itself is
        returned, uncopied.
        """
        if self._buffer:
            self._buffer += chunk
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = chunk
        crlf = b"\r" in data
        pieces: list[bytes] = []
        kept_from = start = 0  # kept_from: the start of the run of kept events being built
        while True:
            if crlf:
                index, width = next_boundary(data, start)
            else:
                index, width = data.find(b"\n\n", start), 2
            if index == -1:
                break
            end = index + width
            if not self._keep(data[start:index]):
                pieces.append(data[kept_from:start])
                kept_from = end
            start = end
        if start < len(data):
            self._buffer += data[start:]
        if not pieces:
            return data if start == len(data) and not kept_from else data[kept_from:start]
        pieces.append(data[kept_from:start])
        return b"".join(pieces)

    def finish(self) -> bytes:
        """Whatever is left when the upstream ends (a last event without its blank line)."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        if rest.strip() and self._keep(rest):
            return rest if rest.endswith(b"\n\n") else rest + b"\n\n"
        return b""

    def failure(self, message: str) -> bytes:
        """An error envelope as one more event (chat and completions clients read this)."""
        envelope = ErrorEnvelope.of(message, "upstream_error")
        return b"data: " + envelope.to_json_bytes() + b"\n\n"

    def _keep(self, event: bytes) -> bool:
        data = event_data(event)
        if data is None:
            return True
        if data == _DONE:
            self.saw_done = True
            return True
        try:
            probe = ResponseProbe.model_validate_json(data)
        except ValidationError:
            return True  # not ours to judge: forwarded as it came
        if probe.error is not None:
            self.error_payload = data
            return True
        if any(choice.carries_token() for choice in probe.choices):
            self.token_events += 1
            if self.first_token_at is None:
                self.first_token_at = time.perf_counter()
        for choice in probe.choices:
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason
        if probe.usage is not None:
            self.usage = probe.usage
            if not probe.choices and not self._client_wants_usage:
                return False
        return True
