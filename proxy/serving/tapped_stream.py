"""TappedStream: an ASGI response that relays an upstream SSE stream through an `SSETap`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from proxy.accounting.record import LedgerRow
from proxy.backends.base import UpstreamResponse
from proxy.errors import BackendUnavailable, LedgerStatus
from proxy.server.protocol import DISCONNECT, DisconnectHooks
from proxy.serving.exchange import Exchange, wait_for_disconnect
from proxy.serving.stream_tap import StreamTap

_SHUTDOWN_MESSAGE = ("The proxy is shutting down and this stream outlived its grace period; "
                     "its answer is incomplete.")


class TappedStream(Response):
    """Relays bytes as they arrive; a client disconnect cancels the upstream at once.

    Starlette's StreamingResponse notices a departed client only when it next writes, which
    could be never for a stalled upstream, so this response also listens on `receive`.

    The row is recorded (`on_record`: journal, then ledger) *before* the bytes that complete
    the answer (`data: [DONE]`, `response.completed`) go out, so a process killed after the
    client has its answer still has the row; `on_complete` (a stored response) is awaited just
    before that too; `on_close` runs once the upstream connection is closed.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        *,
        exchange: Exchange,
        tap: StreamTap,
        response: UpstreamResponse,
        iterator: AsyncIterator[bytes],
        first_chunk: bytes,
        headers: dict[str, str],
        on_record: Callable[[LedgerRow], None],
        on_close: Callable[[], None],
        on_complete: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.status_code = 200
        self.background = None
        headers = headers | {"cache-control": "no-cache", "x-accel-buffering": "no"}
        self.init_headers(headers)
        self._exchange = exchange
        self._tap = tap
        self._response = response
        self._iterator = iterator
        self._first_chunk = first_chunk
        self._on_record = on_record
        self._on_close = on_close
        self._on_complete = on_complete
        self._failure: BackendUnavailable | None = None
        self._tap_s = 0.0
        self._recorded = False
        self._started = False  # http.response.start sent
        self._interrupted = False  # ended by the server's shutdown

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pump until the upstream ends or the client leaves; the row is recorded once."""
        pump = asyncio.ensure_future(self._pump(send))
        hooks: DisconnectHooks | None = scope.get("extensions", {}).get(DISCONNECT)
        watch: asyncio.Future[None]
        if hooks is not None:  # the connection says when it is lost (proxy/server/protocol.py)
            watch = asyncio.get_running_loop().create_future()

            def client_left() -> None:
                if not watch.done():
                    watch.set_result(None)

            hooks.add(client_left)
        else:
            watch = asyncio.ensure_future(wait_for_disconnect(receive))
        disconnected = False
        try:
            try:
                await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                # Not the client: the server's shutdown grace is over (uvicorn cancels what is
                # left). Take the cancellation back and end the stream with an error event.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                self._interrupted = True
            if not pump.done():
                disconnected = not self._interrupted
                pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            if self._interrupted and not self._recorded:
                await self._end_interrupted(send)
        except OSError:  # the server could not write: the client is gone
            disconnected = True
        finally:
            watch.cancel()
            if hooks is not None:
                hooks.remove(client_left)
            await self._close()
            self._record(disconnected)
            self._on_close()

    async def _end_interrupted(self, send: Send) -> None:
        """The error event and the end of the body, the row recorded just before."""
        if not self._started:
            await send({"type": "http.response.start", "status": 200,
                        "headers": self.raw_headers})
        self._record(disconnected=False)
        await self._send(send, self._tap.failure(_SHUTDOWN_MESSAGE))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _pump(self, send: Send) -> None:
        exchange = self._exchange
        # Everything before the first byte, less the time spent waiting on the backend.
        exchange.overhead_ms = exchange.overhead_so_far_ms()
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        self._started = True
        await self._forward(send, self._first_chunk)
        try:
            async for chunk in self._iterator:
                await self._forward(send, chunk)
        except BackendUnavailable as exc:
            self._failure = exc
            what = "timed out" if exc.timed_out else "broke off"
            await self._send(send, self._tap.failure(f"upstream stream {what} mid-answer"))
        rest = self._tap.finish()
        await self._complete()
        self._record(disconnected=False)
        await self._send(send, rest)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _forward(self, send: Send, chunk: bytes) -> None:
        started = time.perf_counter()
        out = self._tap.feed(chunk)
        self._tap_s += time.perf_counter() - started
        if self._tap.saw_done and not self._recorded:
            split = self._tap.end_offset or 0
            await self._send(send, out[:split])  # output before the end need not wait
            await self._complete()
            self._record(disconnected=False)  # before the client can see the answer end
            out = out[split:]
        await self._send(send, out)

    async def _complete(self) -> None:
        on_complete, self._on_complete = self._on_complete, None
        if on_complete is not None and self._failure is None:
            await on_complete()

    @staticmethod
    async def _send(send: Send, body: bytes) -> None:
        if body:
            await send({"type": "http.response.body", "body": body, "more_body": True})

    async def _close(self) -> None:
        with contextlib.suppress(Exception):
            await self._iterator.aclose()  # type: ignore[attr-defined]
        with contextlib.suppress(Exception):
            await self._response.aclose()

    def _record(self, disconnected: bool) -> None:
        if self._recorded:
            return
        row = self._settle(disconnected)
        self._recorded = True
        self._on_record(row)

    def _settle(self, disconnected: bool) -> LedgerRow:
        exchange, tap = self._exchange, self._tap
        if tap.first_token_at is not None:
            exchange.ttft_ms = (tap.first_token_at - exchange.started_at) * 1000.0
        exchange.finish_reason = tap.finish_reason
        exchange.set_usage(tap.usage, completion_estimate=tap.token_events,
                           source="stream_events")
        exchange.overhead_ms = (exchange.overhead_ms or 0.0) + self._tap_s * 1000.0
        if self._interrupted:
            return exchange.record("interrupted", 200, error_type="server_shutting_down",
                                   error_message=_SHUTDOWN_MESSAGE)
        if disconnected:
            return exchange.record("client_disconnect", 200, error_type="client_disconnect")
        if self._failure is not None:
            status: LedgerStatus = "timeout" if self._failure.timed_out else "upstream_error"
            return exchange.record(status, 200, error_type="stream_interrupted",
                                   error_message=str(self._failure))
        if tap.error_payload is not None:
            return exchange.record("upstream_error", 200, error_type="upstream_stream_error",
                                   error_message=tap.error_payload.decode(errors="replace"))
        if not tap.saw_done and tap.finish_reason is None:
            return exchange.record("upstream_error", 200, error_type="stream_truncated",
                                   error_message="upstream closed the stream without finishing")
        return exchange.record("ok", 200)
