"""KeepAliveTransport: lean HTTP/1.1 keep-alive to plain-TCP upstreams, on asyncio protocols.

httpcore's pool polls every pooled socket on every request (`has_expired`), which costs more
than the rest of a proxied request at high concurrency. This transport keeps idle connections
in a queue per origin (the one idle longest goes first) and parses responses with httptools
(uvicorn's C parser) straight from the protocol's `data_received`: no StreamReader copy, no
task per read (one future and one timer per wait), and no httpx objects:
`OpenAICompatibleBackend` sends a prebuilt request with `exchange`. Failures are httpx's own
exceptions, so callers map one family for both this transport and httpx's (used for TLS
upstreams).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterator

import httptools
import httpx

_Origin = tuple[str, int]
# Past this many unread body bytes the socket stops being read until the reader catches up
# (a fast upstream, a slow client): memory per stream stays bounded.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024


class _StaleConnection(Exception):
    """The connection died before any response byte arrived."""


class _Connection(asyncio.Protocol):
    """One upstream socket; httptools feeds the response being read into this object."""

    def __init__(self, origin: _Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.lost = False  # the peer closed or the connection broke
        self.error: httpx.HTTPError | None = None
        self._waiter: asyncio.Future[bool] | None = None
        self._paused = False
        self.released_at = 0.0  # when it last went back to the idle queue (monotonic)
        self.reset()

    def reset(self) -> None:
        """Ready for the next response on this connection."""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.status = 0
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.got_bytes = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        self.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.error = httpx.RemoteProtocolError(f"invalid HTTP response: {exc}")
            self.close()
        if self.buffered > _HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.lost = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        self.status = self.parser.get_status_code()
        # Ask now: after the message completes, httptools has reset and always says False.
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        self.complete = True

    # used by the transport and the response stream
    def take(self) -> bytes:
        """The oldest unread body piece (resuming the socket once the backlog is small)."""
        chunk = self.body.popleft()
        self.buffered -= len(chunk)
        if self._paused and self.buffered < _LOW_WATER and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def wait(self, timeout_s: float) -> bool:
        """Until more arrives or the connection ends; False if `timeout_s` passed first."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout_s, _expire, waiter)
        try:
            arrived: bool = await waiter
            return arrived
        finally:
            timer.cancel()
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    def idle_usable(self) -> bool:
        return not self.lost and self.transport is not None and not self.transport.is_closing()

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.close()


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)  # timed out


# An idle connection older than this is closed rather than reused: the queue hands out the one
# idle longest, which is the one a server's keep-alive timeout closes first (uvicorn's, and so
# vLLM's, is 5 s); reusing it as the server hangs up costs the request a reconnect.
IDLE_EXPIRY_S = 4.0


class KeepAliveTransport:
    """HTTP/1.1 only, plain TCP only (upstreams behind TLS use the default httpx transport)."""

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float, max_idle: int,
                 idle_expiry_s: float = IDLE_EXPIRY_S) -> None:
        self.read_timeout_s = read_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._max_idle = max_idle
        self._idle_expiry_s = idle_expiry_s
        # Oldest first, not a stack: a level-triggered poller (asyncio's and uvloop's epoll)
        # that did not find a socket idle since it last returned it returns it again at its old
        # place, whatever the order new data came in. On a busy loop a stack hands the wave of
        # requests that follows a wave of answers the connections in reverse, so each wave's
        # answers were read last-sent first: in a c=32 closed loop, with timestamps in the
        # proxy, 66% of consecutive requests were overtaken by the next; none with a queue.
        self._idle: dict[_Origin, collections.deque[_Connection]] = collections.defaultdict(
            collections.deque)

    async def exchange(self, origin: _Origin, payload: bytes) -> ResponseStream:
        """Send a whole request (head and body); return once the status and headers are in."""
        while True:
            connection, reused = await self._checkout(origin)
            try:
                await self._send(connection, payload)
            except _StaleConnection:
                connection.close()
                if reused:
                    continue  # the server closed an idle keep-alive connection: try a new one
                raise httpx.RemoteProtocolError("server closed the connection") from None
            except BaseException:
                connection.close()
                raise
            return ResponseStream(self, connection)

    async def _checkout(self, origin: _Origin) -> tuple[_Connection, bool]:
        idle = self._idle[origin]
        fresh_since = time.monotonic() - self._idle_expiry_s
        while idle:
            connection = idle.popleft()
            if connection.idle_usable() and connection.released_at > fresh_since:
                return connection, True
            connection.close()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                _, connection = await loop.create_connection(
                    lambda: _Connection(origin), origin[0], origin[1])
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect to {origin[0]}:{origin[1]} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"connect to {origin[0]}:{origin[1]}: {exc}") from exc
        return connection, False

    async def _send(self, connection: _Connection, payload: bytes) -> None:
        connection.reset()
        assert connection.transport is not None
        connection.transport.write(payload)
        while not connection.headers_done:
            if connection.error is not None:
                raise connection.error
            if connection.lost:
                if connection.got_bytes:
                    raise httpx.RemoteProtocolError("server closed the connection mid-headers")
                raise _StaleConnection
            if not await connection.wait(self.read_timeout_s):
                raise httpx.ReadTimeout("timed out waiting for the response headers")

    def release(self, connection: _Connection, reusable: bool) -> None:
        """Return a connection after a complete response, or close it."""
        idle = self._idle[connection.origin]
        if reusable and connection.idle_usable() and len(idle) < self._max_idle:
            connection.released_at = time.monotonic()
            idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


class ResponseStream:
    """A response whose head is in; its body is read once, whole or as it arrives.

    Closing it before the body is complete closes the connection, which is how an upstream
    learns that its client went away.
    """

    def __init__(self, transport: KeepAliveTransport, connection: _Connection) -> None:
        self._transport = transport
        self._connection = connection
        self.status = connection.status
        self.headers = connection.headers
        self._eof = False  # a close-delimited body has ended
        self._released = False

    def header(self, name: bytes) -> str | None:
        """One header's value (the first), by lower-case name."""
        for key, value in self.headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return None

    async def read(self) -> bytes:
        """The whole body."""
        connection = self._connection
        pieces: list[bytes] = []
        while True:
            while connection.body:  # taken as it comes: a paused socket resumes
                pieces.append(connection.take())
            if connection.complete or self._eof:
                break
            await self._more()
        self._release()
        return b"".join(pieces)

    async def iter_raw(self) -> AsyncIterator[bytes]:
        """The body in the pieces it arrived in."""
        connection = self._connection
        while True:
            while connection.body:
                yield connection.take()
            if connection.complete or self._eof:
                self._release()
                return
            await self._more()

    async def _more(self) -> None:
        """Wait for body bytes; a connection that ends here ends a close-delimited body."""
        connection = self._connection
        if connection.error is not None:
            raise connection.error
        if connection.body or connection.complete:
            return
        if connection.lost:
            if not _has_length(connection.headers):
                self._eof = True
                return
            raise httpx.RemoteProtocolError("peer closed connection without sending complete "
                                            "message body")
        if not await connection.wait(self._transport.read_timeout_s):
            raise httpx.ReadTimeout("timed out waiting for the response body")

    def _release(self) -> None:
        """Back to the idle queue if the connection can carry another request, else closed."""
        if not self._released:
            self._released = True
            connection = self._connection
            self._transport.release(connection, connection.complete and connection.keep_alive)

    async def aclose(self) -> None:
        """Hang up unless the response is complete (then the connection may be reused)."""
        if not self._released:
            if self._connection.complete:
                self._release()
            else:
                self._released = True
                self._connection.close()


def _has_length(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            return True
    return False

