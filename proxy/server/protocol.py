"""Client limits at the connection: a header deadline and size, a connection cap.

uvicorn (httptools) waits for a request's headers for ever and reads headers of any size, so
one client could hold a connection (and a file descriptor) for as long as it liked by sending
nothing, or a byte at a time. This protocol gives each request's headers `header_timeout_s`
from its first byte (from the connect for the first request) and `max_header_bytes`; past
either it answers 408 or 431 in OpenAI's envelope and closes. Idle keep-alive connections are
uvicorn's `timeout_keep_alive`.

Past `max_connections` open connections a request is marked in its scope (`OVER_CAPACITY`) and
the app answers 503 in OpenAI's envelope with a ledger row (`proxy/api/openai.py`), closing the
connection; uvicorn's own `limit_concurrency` would answer a bare text/plain 503 instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from proxy.protocol.errors import ErrorEnvelope

OVER_CAPACITY = "sprout.over_capacity"  # scope["extensions"] key the protocol sets
DISCONNECT = "sprout.disconnect"  # scope["extensions"] key: this connection's DisconnectHooks
BODY_IN = "sprout.body_in"  # scope["extensions"] key: True once the whole body has arrived


def body_in(scope: Scope) -> bool:
    """Whether the request's whole body has arrived, so that `receive()` returns at once.

    The protocol marks this very request's scope when the parser finishes its message (a
    pipelined next request has a scope of its own); False where the server is not this
    protocol, or the body is still coming.
    """
    return (scope.get("extensions") or {}).get(BODY_IN, False) is True


class DisconnectHooks:
    """Callbacks run when the client's connection is lost.

    What a request waiting on its upstream uses to learn that its client left, instead of a
    task per request parked in `receive()` for the `http.disconnect` message.
    """

    __slots__ = ("_callbacks", "gone")

    def __init__(self) -> None:
        self._callbacks: list[Callable[[], None]] = []
        self.gone = False

    def add(self, callback: Callable[[], None]) -> None:
        """Run `callback` when the connection is lost (soon, if it already is)."""
        if self.gone:
            asyncio.get_running_loop().call_soon(callback)
        else:
            self._callbacks.append(callback)

    def remove(self, callback: Callable[[], None]) -> None:
        """No longer interested."""
        with contextlib.suppress(ValueError):
            self._callbacks.remove(callback)

    def fire(self) -> None:
        """The connection is gone: run every callback once."""
        self.gone = True
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline, a header size and a connection cap."""

    def __init__(self, *args: Any, header_timeout_s: float, max_header_bytes: int,
                 max_connections: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._max_header_bytes = max_header_bytes
        self._max_connections = max_connections
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._in_headers = False
        self._disconnect = DisconnectHooks()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the first request's header clock at the connect."""
        super().connection_made(transport)
        self._start_headers(begun=False)

    def connection_lost(self, exc: Exception | None) -> None:
        """Nothing left to time; whoever waits on this client learns that it left."""
        self._stop_headers()
        super().connection_lost(exc)
        self._disconnect.fire()

    def data_received(self, data: bytes) -> None:
        """Count the bytes of headers still unfinished after this chunk (the parser keeps them)."""
        counting = self._in_headers
        super().data_received(data)
        if counting and self._in_headers:
            self._header_bytes += len(data)
            if self._header_bytes > self._max_header_bytes:
                self._refuse(431, "Request headers too large: the limit is "
                                  f"{self._max_header_bytes} bytes.", "request_header_too_large")

    def on_message_begin(self) -> None:
        """A request's first byte: its header clock starts (unless a response is in progress)."""
        super().on_message_begin()
        if not self._in_headers and (self.cycle is None or self.cycle.response_complete):
            self._start_headers(begun=True)

    def on_headers_complete(self) -> None:
        """Headers are in: stop their clock, mark the request if past the connection cap."""
        self._stop_headers()
        extensions: dict[str, Any] = self.scope.setdefault("extensions", {})
        extensions[DISCONNECT] = self._disconnect
        if len(self.connections) > self._max_connections:
            extensions[OVER_CAPACITY] = {"connections": len(self.connections),
                                         "max_connections": self._max_connections}
        super().on_headers_complete()
        if self.cycle is not None and self.scope["method"] != "HEAD":  # HEAD writes no body
            self.cycle.transport = _OneWriteResponses(self.transport)  # type: ignore[assignment]

    def on_message_complete(self) -> None:
        """The whole body is in: mark the scope, for `body_in`.

        A flag, not the cycle itself: the cycle holds the scope, and a scope holding the cycle
        made every request a reference cycle, left for the collector (at c=32 the loop's worst
        lag went from 11 to 41 ms).
        """
        super().on_message_complete()
        cycle = self.cycle  # an upgrade's scope has none of its own: the check skips it
        if cycle is not None and cycle.scope is self.scope and not cycle.more_body:
            extensions: dict[str, Any] = self.scope["extensions"]
            extensions[BODY_IN] = True

    def _start_headers(self, *, begun: bool) -> None:
        self._stop_headers()
        self._in_headers = True
        self._header_bytes = 1 if begun else 0  # its first chunk was counted by nobody
        self._header_timer = self.loop.call_later(self._header_timeout_s, self._headers_late)

    def _stop_headers(self) -> None:
        self._in_headers = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self._header_bytes == 0:
            self.transport.close()  # connected and sent nothing: no request to answer
            return
        self._refuse(408, f"Request headers not received within {self._header_timeout_s:g} s.",
                     "request_timeout")

    def _refuse(self, status: int, message: str, code: str) -> None:
        """Answer before any request exists (so no ledger row), then close."""
        self._stop_headers()
        if self.transport.is_closing():
            return
        body = ErrorEnvelope.of(message, "invalid_request_error", code=code).to_json_bytes()
        reason = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[status]
        self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\n"
                             b"content-length: %d\r\nconnection: close\r\n\r\n%s"
                             % (status, reason, len(body), body))
        self.transport.close()


class _OneWriteResponses:
    """The transport as a response cycle sees it: a sized head waits for its body.

    A head with a Content-Length goes out with the body, in one write (one send(2) instead of
    two per plain answer). Streamed (chunked) heads go out at once, as do `100 Continue`
    lines. Everything else is the real transport's.
    """

    __slots__ = ("_head", "_transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        """Hold a sized response head; send it with what follows."""
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif (data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 100 ")
              and b"\r\ncontent-length: " in data):
            self._head = data
        else:
            self._transport.write(data)

    def close(self) -> None:
        """Send a held head (a body-less answer), then close."""
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)
