"""KeepAliveTransport: a lean httpx transport for HTTP/1.1 keep-alive over asyncio streams.

httpcore's pool polls every pooled socket on every request (`has_expired`), which costs more
than the rest of a proxied request at high concurrency. This transport keeps idle connections
on a LIFO stack per origin, parses responses with httptools (uvicorn's C parser), and maps
failures to httpx's own exceptions, so callers see ordinary `httpx.Response`s.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator

import httptools
import httpx

_Origin = tuple[str, int]


class _Parsed:
    """httptools callbacks: collects the status line, headers and body pieces."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: collections.deque[bytes] = collections.deque()
        self.headers_done = False
        self.complete = False
        self.keep_alive = False
        self.parser: httptools.HttpResponseParser | None = None

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # Ask now: after the message completes, httptools has reset and always says False.
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.used = False

    def close(self) -> None:
        self.writer.close()


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 only, plain TCP only (upstreams behind TLS use the default httpx transport)."""

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float, max_idle: int) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_idle = max_idle
        self._idle: dict[_Origin, list[_Connection]] = collections.defaultdict(list)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request; return once the status line and headers are in."""
        origin = (request.url.host, request.url.port or 80)
        head = _request_head(request)
        body = request.content
        while True:
            connection, reused = await self._checkout(origin)
            try:
                parsed, parser = await self._exchange(connection, head + body)
            except _StaleConnection:
                connection.close()
                if reused:
                    continue  # the server closed an idle keep-alive connection: try a new one
                raise httpx.RemoteProtocolError("server closed the connection") from None
            except BaseException:
                connection.close()
                raise
            break
        stream = _ResponseStream(self, origin, connection, parsed, parser, self._read_timeout_s)
        return httpx.Response(parser.get_status_code(), headers=parsed.headers, stream=stream,
                              request=request)

    async def _checkout(self, origin: _Origin) -> tuple[_Connection, bool]:
        idle = self._idle[origin]
        while idle:
            connection = idle.pop()
            if not connection.reader.at_eof():
                return connection, True
            connection.close()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(*origin), self._connect_timeout_s
            )
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connect to {origin[0]}:{origin[1]} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"connect to {origin[0]}:{origin[1]}: {exc}") from exc
        return _Connection(reader, writer), False

    async def _exchange(
        self, connection: _Connection, payload: bytes
    ) -> tuple[_Parsed, httptools.HttpResponseParser]:
        parsed = _Parsed()
        parser = httptools.HttpResponseParser(parsed)
        parsed.parser = parser
        try:
            connection.writer.write(payload)
            while not parsed.headers_done:
                data = await asyncio.wait_for(connection.reader.read(65536), self._read_timeout_s)
                if not data:
                    raise _StaleConnection
                parser.feed_data(data)
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out waiting for the response headers") from exc
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise _StaleConnection from exc
        except httptools.HttpParserError as exc:
            raise httpx.RemoteProtocolError(f"invalid HTTP response: {exc}") from exc
        connection.used = True
        return parsed, parser

    def release(self, origin: _Origin, connection: _Connection, reusable: bool) -> None:
        """Return a connection after a complete response, or close it."""
        idle = self._idle[origin]
        if reusable and len(idle) < self._max_idle:
            idle.append(connection)
        else:
            connection.close()

    async def aclose(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


class _StaleConnection(Exception):
    """The connection died before any response byte arrived."""


class _ResponseStream(httpx.AsyncByteStream):
    """The body as it arrives; closing it early closes the connection (cancels upstream)."""

    def __init__(self, transport: KeepAliveTransport, origin: _Origin, connection: _Connection,
                 parsed: _Parsed, parser: httptools.HttpResponseParser, read_timeout_s: float):
        self._transport = transport
        self._origin = origin
        self._connection = connection
        self._parsed = parsed
        self._parser = parser
        self._read_timeout_s = read_timeout_s
        self._done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parsed, reader = self._parsed, self._connection.reader
        while True:
            while parsed.body:
                yield parsed.body.popleft()
            if parsed.complete:
                self._finish(reusable=parsed.keep_alive)
                return
            try:
                data = await asyncio.wait_for(reader.read(65536), self._read_timeout_s)
            except TimeoutError as exc:
                raise httpx.ReadTimeout("timed out waiting for the response body") from exc
            except OSError as exc:
                raise httpx.ReadError(str(exc)) from exc
            if not data:
                if not _has_length(parsed.headers):
                    self._finish(reusable=False)  # body delimited by connection close
                    return
                raise httpx.RemoteProtocolError("peer closed connection without sending "
                                                "complete message body")
            try:
                self._parser.feed_data(data)
            except httptools.HttpParserError as exc:
                raise httpx.RemoteProtocolError(f"invalid HTTP body: {exc}") from exc

    def _finish(self, *, reusable: bool) -> None:
        if not self._done:
            self._done = True
            self._transport.release(self._origin, self._connection, reusable)

    async def aclose(self) -> None:
        if not self._done:
            self._done = True
            self._connection.close()


def _has_length(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-length" or (
            lowered == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            return True
    return False


def _request_head(request: httpx.Request) -> bytes:
    target = request.url.raw_path
    lines = [request.method.encode() + b" " + target + b" HTTP/1.1"]
    has_host = False
    for name, value in request.headers.raw:
        has_host = has_host or name.lower() == b"host"
        lines.append(name + b": " + value)
    if not has_host:
        lines.append(b"Host: " + request.url.netloc)
    return b"\r\n".join(lines) + b"\r\n\r\n"
