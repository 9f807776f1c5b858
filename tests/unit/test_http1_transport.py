"""KeepAliveTransport against raw asyncio servers: reuse, stale connections, timeouts, bodies."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx
import pytest

from proxy.backends.http1_transport import KeepAliveTransport

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.Server, str, list[int]]:
    connections: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1/x", connections


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return await reader.readexactly(length)


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def _origin(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "", parts.port or 80


def _request(body: bytes) -> bytes:
    return (b"POST /v1/x HTTP/1.1\r\nhost: x\r\ncontent-length: " + str(len(body)).encode()
            + b"\r\n\r\n" + body)


async def _get(transport: KeepAliveTransport, url: str, body: bytes = b"{}") -> tuple[int, bytes]:
    response = await transport.exchange(_origin(url), _request(body))
    data = b"".join([chunk async for chunk in response.iter_raw()])
    await response.aclose()
    return response.status, data


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer each request on the connection with its own body, until the client hangs up."""
    while True:
        try:
            body = await _read_request(reader)
        except asyncio.IncompleteReadError:
            return
        writer.write(_ok(body))
        await writer.drain()


def _transport(read_timeout_s: float = 2.0) -> KeepAliveTransport:
    return KeepAliveTransport(connect_timeout_s=1, read_timeout_s=read_timeout_s, max_idle=8)


def test_keep_alive_connections_are_reused() -> None:
    async def scenario() -> None:
        server, url, connections = await _serve(_echo)
        transport = _transport()
        for i in range(5):
            payload = f'{{"n": {i}}}'.encode()
            assert await _get(transport, url, payload) == (200, payload)
        assert len(connections) == 1
        await transport.aclose()
        server.close()

    asyncio.run(scenario())


def test_the_connection_idle_longest_is_used_first() -> None:
    """Idle connections are a queue, not a stack, so a busy loop reads answers in order.

    With a stack, the wave of requests after a wave of answers got the connections in reverse,
    and a level-triggered poller that had not found them idle returned them at their old
    places: each wave's answers were read last-sent first (66% of consecutive requests
    overtaken at c=32, timestamps in the proxy).
    """
    opened: list[int] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(opened)
        opened.append(number)
        while True:
            try:
                await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(_ok(str(number).encode()))
            await writer.drain()

    async def scenario() -> None:
        server, url, _ = await _serve(handler)
        transport = _transport()
        held = await asyncio.gather(*(transport.exchange(_origin(url), _request(b"{}"))
                                      for _ in range(3)))
        # Read, and so given back, in this order.
        bodies = {index: await held[index].read() for index in (2, 0, 1)}
        served_by = [(await _get(transport, url))[1] for _ in range(4)]
        assert served_by == [bodies[2], bodies[0], bodies[1], bodies[2]]
        assert len(opened) == 3
        await transport.aclose()
        server.close()

    asyncio.run(scenario())


def test_a_connection_idle_past_its_expiry_is_closed_not_reused() -> None:
    async def scenario() -> None:
        server, url, connections = await _serve(_echo)
        transport = KeepAliveTransport(connect_timeout_s=1, read_timeout_s=2, max_idle=8,
                                       idle_expiry_s=0.2)
        assert (await _get(transport, url))[0] == 200
        assert (await _get(transport, url))[0] == 200  # within the expiry: reused
        assert len(connections) == 1
        await asyncio.sleep(0.3)
        assert (await _get(transport, url))[0] == 200
        assert len(connections) == 2
        await transport.aclose()
        server.close()

    asyncio.run(scenario())


def test_a_connection_closed_by_the_server_while_idle_is_replaced() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_ok(b"{}"))  # keep-alive implied, but the server hangs up right after
        await writer.drain()

    async def scenario() -> None:
        server, url, connections = await _serve(handler)
        transport = _transport()
        for _ in range(3):
            assert (await _get(transport, url))[0] == 200
        assert len(connections) == 3
        server.close()

    asyncio.run(scenario())


def test_chunked_and_close_delimited_bodies() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await _read_request(reader)
        if body == b"chunked":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                         b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil-close")
        await writer.drain()

    async def scenario() -> None:
        server, url, _ = await _serve(handler)
        transport = _transport()
        assert await _get(transport, url, b"chunked") == (200, b"abcde")
        assert await _get(transport, url, b"close") == (200, b"until-close")
        server.close()

    asyncio.run(scenario())


def test_timeouts_and_refused_connections_map_to_httpx_errors() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async def scenario() -> None:
        server, url, _ = await _serve(silent)
        with pytest.raises(httpx.ReadTimeout):
            await _get(_transport(read_timeout_s=0.2), url)
        server.close()
        await server.wait_closed()
        with pytest.raises(httpx.ConnectError):
            await _get(_transport(), url)

    asyncio.run(scenario())


def test_truncated_body_is_a_protocol_error_and_early_close_hangs_up() -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await _read_request(reader)
        if body == b"truncate":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n")
        await writer.drain()
        await reader.read()  # returns when the client hangs up
        closed.set()

    async def scenario() -> None:
        server, url, _ = await _serve(handler)
        transport = _transport()
        with pytest.raises(httpx.RemoteProtocolError):
            await _get(transport, url, b"truncate")
        response = await transport.exchange(_origin(url), _request(b"stream"))
        stream = response.iter_raw()
        assert await anext(stream) == b"abc"
        await response.aclose()  # the client gives up mid-body: the upstream must see it
        await asyncio.wait_for(closed.wait(), 1)
        server.close()

    asyncio.run(scenario())


def test_bodies_past_the_high_water_mark_are_read_whole() -> None:
    """Reading pauses the socket past 256 KiB unread; taking the pieces resumes it."""
    big = b"x" * (3 * 1024 * 1024)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(_ok(big))
        await writer.drain()

    async def scenario() -> None:
        server, url, _ = await _serve(handler)
        transport = _transport()
        whole = await (await transport.exchange(_origin(url), _request(b"{}"))).read()
        assert whole == big
        assert (await _get(transport, url))[1] == big  # and as it arrives
        await transport.aclose()
        server.close()

    asyncio.run(scenario())
