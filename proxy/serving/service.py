"""Serving: route, admit, send with retries before the first byte, answer, hand over the row."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from pydantic import ValidationError
from starlette.responses import Response
from starlette.types import Receive

from proxy.accounting.ledger_writer import LedgerWriter
from proxy.accounting.provisional import ProvisionalAccounts
from proxy.accounting.record import LedgerRow
from proxy.backends.base import UpstreamRequest, UpstreamResponse
from proxy.energy.devices import DeviceMap
from proxy.errors import (
    BackendUnavailable,
    DeadlineExceeded,
    Overloaded,
    ProxyError,
    ShuttingDown,
    UpstreamFailed,
    UpstreamRateLimited,
    UpstreamTimedOut,
)
from proxy.limits.usage import KeyUsage
from proxy.pools.config import Endpoint
from proxy.pools.registry import Pool, PoolRegistry, Route
from proxy.protocol.chat import ChatCompletionRequest
from proxy.protocol.completions import CompletionRequest, EmbeddingRequest
from proxy.protocol.errors import ErrorEnvelope
from proxy.protocol.responses import ResponsesRequest
from proxy.protocol.streaming import ResponseProbe, StreamOptions
from proxy.redact import redact_text
from proxy.routing.router import RouteAsk, Router
from proxy.server.protocol import DisconnectHooks
from proxy.serving.capture import CapturePolicy
from proxy.serving.deadline import Deadline
from proxy.serving.directing import Director
from proxy.serving.exchange import (
    CLIENT_CLOSED_REQUEST,
    Exchange,
    error_body,
    wait_for_disconnect,
)
from proxy.serving.flights import InFlight
from proxy.serving.responses import ResponsesPlan, ResponsesRelay, Turn
from proxy.serving.retry import RetryPolicy
from proxy.serving.stream_tap import SSETap, StreamTap
from proxy.serving.tapped_stream import TappedStream
from proxy.serving.usage_estimate import tokens_from_chars

InferenceRequest = ChatCompletionRequest | CompletionRequest | EmbeddingRequest | ResponsesRequest
T = TypeVar("T")
log = logging.getLogger(__name__)


class Serving:
    """Built once at start-up; every inference request passes through `serve` or `reject`."""

    def __init__(
        self,
        registry: PoolRegistry,
        ledger: LedgerWriter,
        retry: RetryPolicy,
        rng: random.Random,
        director: Director,
        accounts: ProvisionalAccounts,
        devices: DeviceMap,
        flights: InFlight,
        usage: KeyUsage,
        capture: CapturePolicy | None = None,
        router: Router | None = None,
        responses: ResponsesRelay | None = None,
    ) -> None:
        self.registry = registry
        self.router = router
        self.ledger = ledger
        self.retry = retry
        self.rng = rng
        self.director = director
        self.accounts = accounts
        self.devices = devices
        self.flights = flights
        self.usage = usage
        self.capture = capture
        self.responses = responses or ResponsesRelay(None, rng)  # None: nothing is stored

    def begin(self, endpoint: Endpoint) -> Exchange:
        """Start the clock for a request that just arrived."""
        return Exchange(
            # 128 random bits from the seeded generator: unique without a syscall per request.
            request_id=f"req_{self.rng.getrandbits(128):032x}",
            created_at=datetime.now(UTC),
            endpoint=endpoint,
            started_at=time.perf_counter(),
            accounts=self.accounts,
        )

    def reject(self, exchange: Exchange, exc: ProxyError) -> Response:
        """Answer an error in OpenAI's envelope and record it."""
        self._record(exchange, exchange.record_error(exc))
        return Response(
            error_body(exc),
            status_code=exc.status_code,
            media_type="application/json",
            headers=self._headers(exchange) | exc.headers,
        )

    async def serve(
        self,
        exchange: Exchange,
        request: InferenceRequest,
        receive: Receive,
        directive_header: str | None = None,
        deadline: Deadline | None = None,
        disconnect: DisconnectHooks | None = None,
    ) -> Response:
        """Answer a parsed, authenticated request; never raises.

        `disconnect` (from proxy/server/protocol.py) tells when the client leaves; without it,
        `receive` is watched for the `http.disconnect` message.
        """
        exchange.deadline = deadline
        exchange.disconnect = disconnect
        exchange.requested_model = request.model
        exchange.stream = request.is_stream
        exchange.prompt_chars = request.prompt_chars()
        endpoint: Endpoint = exchange.endpoint  # type: ignore[assignment]
        turn: Turn | None = None
        try:
            # The key's fleet-wide limits: in memory, no database round trip (proxy/limits/).
            self.usage.admit(exchange.api_key_id)
            if isinstance(request, ResponsesRequest):  # the earlier turns, from the store
                turn = await self.responses.turn(request, exchange.api_key_id)
            if not isinstance(request, EmbeddingRequest):  # never a directive on embeddings
                if (not exchange.is_evaluator and self.capture is not None
                        and self.capture.wants(exchange.api_key_id)):
                    captured = turn.expanded() if turn is not None else request
                    exchange.captured_request = captured.to_json_bytes().decode()
                request, exchange.directive = self.director.apply(
                    request, exchange.api_key_id, directive_header)
            routes = self.registry.candidates(request.model, endpoint)
            if self.router is not None:
                directive = exchange.directive
                routes, exchange.route = self.router.order(routes, RouteAsk(
                    endpoint, directive.task_class, directive.level, exchange.prompt_chars,
                    _max_tokens(request), self._key_lambda(exchange.api_key_id)))
        except ProxyError as exc:
            return self.reject(exchange, exc)
        failure: ProxyError | None = None
        for index, route in enumerate(routes):
            if index:
                exchange.retries += 1  # failover to the next pool, before any byte was sent
            pool = route.pool
            exchange.pool = pool.name
            exchange.backend_kind = pool.config.kind
            exchange.upstream_model = route.upstream_model
            try:
                await pool.admission.acquire(pool.name)
            except Overloaded as exc:
                failure = exc
                continue
            except asyncio.CancelledError:  # the shutdown grace ended while it queued
                return self.shut_down(exchange)
            exchange.served_at = datetime.now(UTC)
            self.flights.begin(pool.name, exchange.request_id, exchange.served_at)
            answer = await self._attempt(exchange, route, request, receive,
                                         last=index == len(routes) - 1, turn=turn)
            if answer is not None:
                return answer
            failure = exchange.failure
            exchange.served_at = None  # the next pool serves it instead
        assert failure is not None
        return self.reject(exchange, failure)

    async def _attempt(self, exchange: Exchange, route: Route, request: InferenceRequest,
                       receive: Receive, *, last: bool, turn: Turn | None) -> Response | None:
        """One pool's answer; None hands over to the next pool (a failure before any byte)."""
        def release() -> None:
            self._release(route.pool, exchange)

        plan: ResponsesPlan | None = None
        if isinstance(request, ResponsesRequest):
            assert turn is not None
            try:
                plan = ResponsesPlan(self.responses, turn, request, route,
                                     stream=request.is_stream)
            except ProxyError as exc:
                release()
                return self.reject(exchange, exc)
        if request.is_stream and not isinstance(request, EmbeddingRequest):
            try:
                # On success the stream owns the admission slot and releases it when done.
                return await self._stream(exchange, route, request, plan)
            except asyncio.CancelledError:
                release()
                return self.shut_down(exchange)
            except DeadlineExceeded as exc:  # no time left for another pool
                release()
                return self.reject(exchange, exc)
            except (UpstreamFailed, UpstreamTimedOut, UpstreamRateLimited) as exc:
                release()
                if last:
                    return self.reject(exchange, exc)
                exchange.failure = exc
                return None
            except Exception as exc:
                release()
                return self.reject(exchange, _as_proxy_error(exc))
        try:
            return await self._unary(exchange, route, request, receive, plan)
        except DeadlineExceeded as exc:  # no time left for another pool
            return self.reject(exchange, exc)
        except (UpstreamFailed, UpstreamTimedOut, UpstreamRateLimited) as exc:
            if last:
                return self.reject(exchange, exc)
            exchange.failure = exc
            return None
        except Exception as exc:
            return self.reject(exchange, _as_proxy_error(exc))
        finally:
            release()

    async def _unary(
        self, exchange: Exchange, route: Route, request: InferenceRequest, receive: Receive,
        plan: ResponsesPlan | None,
    ) -> Response:
        if plan is not None:
            upstream = plan.upstream
        else:
            payload = request.model_copy(update={"model": route.upstream_model})
            upstream = UpstreamRequest(exchange.endpoint, payload, stream=False)  # type: ignore[arg-type]
        with _CancelOnDisconnect(receive, exchange.disconnect) as watch:
            try:
                response, body = await self._with_retries(exchange, route.pool, upstream, _read)
            except asyncio.CancelledError:
                if not watch.client_gone():
                    return self.shut_down(exchange)
                # The client left; the cancelled fetch has closed the upstream connection.
                exchange.set_usage(None, completion_estimate=0, source="estimate_chars")
                self._record(exchange,
                             exchange.record("client_disconnect", CLIENT_CLOSED_REQUEST))
                return Response(status_code=CLIENT_CLOSED_REQUEST)
        if plan is not None:
            return await self._responses_answer(exchange, response, body, plan)
        return self._unary_answer(exchange, response, body)

    async def _responses_answer(
        self, exchange: Exchange, response: UpstreamResponse, body: bytes, plan: ResponsesPlan
    ) -> Response:
        """A unary Responses answer: translated back if need be, stored, then recorded."""
        status = response.status_code
        answer = plan.answer(status, body)
        exchange.set_usage(answer.usage, completion_estimate=tokens_from_chars(
            answer.output_chars), source="estimate_chars")
        if status >= 400:
            error_type = _upstream_error_type(body) or f"upstream_http_{status}"
            self._record(exchange, exchange.record(
                "upstream_error", status, error_type=error_type,
                error_message=body[:2000].decode(errors="replace")))
        else:
            exchange.finish_reason = answer.finish_reason
            await plan.keep(answer.body.decode(), exchange.request_id)
            self._record(exchange, exchange.record("ok", status))
        media_type = response.content_type if plan.native else "application/json"
        return Response(answer.body, status_code=status, media_type=media_type,
                        headers=self._headers(exchange))

    def _unary_answer(
        self, exchange: Exchange, response: UpstreamResponse, body: bytes
    ) -> Response:
        status = response.status_code
        try:
            probe: ResponseProbe | None = ResponseProbe.model_validate_json(body)
        except ValidationError:
            probe = None
        estimate = tokens_from_chars(probe.output_chars()) if probe else 0
        exchange.set_usage(
            probe.usage if probe else None, completion_estimate=estimate, source="estimate_chars"
        )
        headers = self._headers(exchange)
        if status >= 400:
            error_type = _upstream_error_type(body) or f"upstream_http_{status}"
            self._record(exchange,
                exchange.record("upstream_error", status, error_type=error_type,
                                error_message=body[:2000].decode(errors="replace"))
            )
        else:
            exchange.finish_reason = probe.finish_reason() if probe else None
            self._record(exchange, exchange.record("ok", status))
        return Response(body, status_code=status, media_type=response.content_type, headers=headers)

    async def _stream(
        self, exchange: Exchange, route: Route,
        request: ChatCompletionRequest | CompletionRequest | ResponsesRequest,
        plan: ResponsesPlan | None,
    ) -> Response:
        tap: StreamTap
        on_complete: Callable[[], Awaitable[None]] | None = None
        if plan is not None:
            upstream = plan.upstream
            responses_tap = plan.tap()
            tap = responses_tap
            on_complete = lambda: plan.keep(responses_tap.final_json,  # noqa: E731
                                            exchange.request_id)
        else:
            assert not isinstance(request, ResponsesRequest)
            client_options = request.stream_options
            wants_usage = bool(client_options and client_options.include_usage)
            forced = (client_options or StreamOptions()).model_copy(
                update={"include_usage": True})
            payload = request.model_copy(
                update={"model": route.upstream_model, "stream_options": forced}
            )
            upstream = UpstreamRequest(exchange.endpoint, payload, stream=True)  # type: ignore[arg-type]
            tap = SSETap(client_wants_usage=wants_usage)
        response, first = await self._with_retries(exchange, route.pool, upstream, _first_chunk)
        if response.status_code != 200:
            self._release(route.pool, exchange)
            if plan is not None:
                return await self._responses_answer(exchange, response, first[1], plan)
            return self._unary_answer(exchange, response, first[1])
        iterator, chunk = first
        return TappedStream(
            exchange=exchange,
            tap=tap,
            on_complete=on_complete,
            response=response,
            iterator=iterator,
            first_chunk=chunk,
            headers=self._headers(exchange),
            on_record=lambda row: self._record(exchange, row),
            on_close=lambda: self._release(route.pool, exchange),
        )

    def shut_down(self, exchange: Exchange) -> Response:
        """A cancellation that is not the client's: the server's shutdown grace is over.

        uvicorn cancels what is still running when `timeout_graceful_shutdown` passes; this
        takes the cancellation back so the client gets OpenAI's envelope, not a text/plain 500,
        and the row says what happened.
        """
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()
        return self.reject(exchange, ShuttingDown(
            "The proxy is shutting down and this request outlived its grace period; retry it.",
            code="server_shutting_down"))

    def _release(self, pool: Pool, exchange: Exchange) -> None:
        """Give back the admission slot and the backend's (exactly once per admission)."""
        if exchange.backend is not None:
            pool.unclaim(exchange.backend)
            exchange.backend = None
        pool.admission.release()
        self.flights.end(pool.name, exchange.request_id)

    def _key_lambda(self, key_id: str | None) -> float | None:
        policy = self.director.key_policy(key_id)
        return policy.routing_lambda if policy is not None else None

    def _record(self, exchange: Exchange, row: LedgerRow) -> None:
        """The finished row goes to the journal and the ledger; the router learns from it."""
        exchange.recorded = True
        if self.router is not None:
            self.router.observe(row, exchange.prompt_chars)
        self.ledger.submit(row)

    async def _with_retries(
        self,
        exchange: Exchange,
        pool: Pool,
        upstream: UpstreamRequest,
        first_bytes: Callable[[UpstreamResponse], Awaitable[T]],
    ) -> tuple[UpstreamResponse, T]:
        """`_attempts` within the request's deadline (measured from its arrival)."""
        deadline = exchange.deadline
        if deadline is None:
            return await self._attempts(exchange, pool, upstream, first_bytes)
        left_s = deadline.limit_s - (time.perf_counter() - exchange.started_at)
        try:
            async with asyncio.timeout(max(0.0, left_s)) as scope:
                return await self._attempts(exchange, pool, upstream, first_bytes)
        except TimeoutError as exc:
            if not scope.expired():
                raise
            raise DeadlineExceeded(deadline.message(), code=deadline.code) from exc

    async def _attempts(
        self,
        exchange: Exchange,
        pool: Pool,
        upstream: UpstreamRequest,
        first_bytes: Callable[[UpstreamResponse], Awaitable[T]],
    ) -> tuple[UpstreamResponse, T]:
        """Try backends in turn until one yields its first bytes; no retry after that."""
        last: BackendUnavailable | None = None
        for attempt, (backend, breaker) in enumerate(
                pool.attempt_order(self.retry.max_attempts)):
            if attempt:
                exchange.retries += 1
                pause_s = self.retry.backoff_s(attempt, self.rng)
                exchange.upstream_s += pause_s  # waiting, not proxy work
                await asyncio.sleep(pause_s)
            exchange.backend_url = backend.url
            # The backend's device until its answer names one (a failure held it too).
            exchange.device_id = self.devices.device_for(pool.name, backend.url)
            sent_at = time.perf_counter()
            pool.claim(backend)
            exchange.backend = backend
            answered = False
            try:
                response = await backend.send(upstream)
                exchange.decoding = response.decoding
                exchange.prefill = response.prefill  # a disaggregated pool's prefill leg
                exchange.served_pool = response.served_pool  # or the member that did it all
                if response.device:
                    exchange.device_id = response.device
                try:
                    if response.status_code >= 500 or response.status_code == 429:
                        detail = (await response.read())[:300].decode(errors="replace")
                        raise BackendUnavailable(
                            f"HTTP {response.status_code}: {detail}",
                            status_code=response.status_code,
                        )
                    value = await first_bytes(response)
                except BaseException:
                    await response.aclose()
                    raise
                breaker.record_success()
                answered = True
                return response, value
            except BackendUnavailable as exc:
                breaker.record_failure()
                last = exc
            finally:
                exchange.upstream_s += time.perf_counter() - sent_at
                if not answered:  # the backend's slot goes back unless it now holds the request
                    pool.unclaim(backend)
                    exchange.backend = None
        attempts = self.retry.max_attempts
        if last is not None:
            # The client learns what kind of failure, not the internal host:port or the
            # transport's words; the row keeps those (credentials hidden) for operators.
            seen = (f"HTTP {last.status_code}" if last.status_code else
                    "timed out" if last.timed_out else "could not connect")
            detail = f"{exchange.backend_url}: {redact_text(str(last))}"
        if last is None:  # every backend's circuit breaker is open
            raise UpstreamFailed(
                f"pool {pool.name!r}: every backend is failing (circuit open); retry later",
                code="circuit_open", headers={"retry-after": "5"})
        if last.status_code == 429:
            raise UpstreamRateLimited(
                f"pool {pool.name!r}: upstream rate limit ({attempts} attempts: {seen})",
                code="upstream_rate_limited",
                headers={"retry-after": "1"},
                detail=detail,
            )
        if last.timed_out:
            raise UpstreamTimedOut(
                f"pool {pool.name!r}: upstream timed out ({attempts} attempts: {seen})",
                code="upstream_timeout",
                detail=detail,
            )
        raise UpstreamFailed(
            f"pool {pool.name!r}: no backend answered ({attempts} attempts; last: {seen})",
            code="upstream_unavailable",
            detail=detail,
        )

    @staticmethod
    def _headers(exchange: Exchange) -> dict[str, str]:
        headers = {
            "x-request-id": exchange.request_id,
            "x-proxy-overhead-ms": f"{exchange.overhead_so_far_ms():.3f}",
        }
        if exchange.pool:
            headers["x-sprout-pool"] = exchange.pool
        if exchange.directive.level:
            headers["x-sprout-directive"] = exchange.directive.level
        return headers


class _CancelOnDisconnect:
    """Cancels the current task if the client disconnects while the block runs.

    With the connection's disconnect hooks, a callback; otherwise one watcher task parked in
    `receive()` (instead of a second task for the work plus `asyncio.wait`).
    """

    def __init__(self, receive: Receive, hooks: DisconnectHooks | None) -> None:
        self._receive = receive
        self._hooks = hooks
        self._gone = False
        self._inside = False
        self._task: asyncio.Task[object] | None = None
        self._watch: asyncio.Task[None] | None = None

    def __enter__(self) -> _CancelOnDisconnect:
        self._task = asyncio.current_task()
        self._inside = True
        if self._hooks is not None:
            self._hooks.add(self._client_left)
        else:
            self._watch = asyncio.ensure_future(wait_for_disconnect(self._receive))
            self._watch.add_done_callback(self._on_done)
        return self

    def _on_done(self, watch: asyncio.Task[None]) -> None:
        if not watch.cancelled():
            self._client_left()

    def _client_left(self) -> None:
        if self._inside and self._task is not None:
            self._gone = True
            self._task.cancel()

    def client_gone(self) -> bool:
        """Whether a cancellation came from the client leaving (and absorb it)."""
        if self._gone and self._task is not None:
            self._task.uncancel()
        return self._gone

    def __exit__(self, *_exc: object) -> None:
        self._inside = False
        if self._hooks is not None:
            self._hooks.remove(self._client_left)
        elif self._watch is not None:
            self._watch.remove_done_callback(self._on_done)
            self._watch.cancel()


def _max_tokens(request: InferenceRequest) -> int | None:
    if isinstance(request, ResponsesRequest):
        return request.max_output_tokens
    if isinstance(request, ChatCompletionRequest):
        return request.max_completion_tokens or request.max_tokens
    if isinstance(request, CompletionRequest):
        return request.max_tokens
    return None


def _as_proxy_error(exc: Exception) -> ProxyError:
    """A bug must still leave a row and an OpenAI-shaped 500."""
    if isinstance(exc, ProxyError):
        return exc
    log.exception("unexpected error while serving a request", exc_info=exc)
    return ProxyError(f"internal proxy error: {type(exc).__name__}", code="internal_error")


async def _read(response: UpstreamResponse) -> bytes:
    return await response.read()


async def _first_chunk(
    response: UpstreamResponse,
) -> tuple[AsyncIterator[bytes], bytes]:
    """The stream's iterator and its first chunk (or the whole body of an error answer)."""
    if response.status_code != 200:
        return _empty(), await response.read()
    iterator = response.iter_bytes()
    try:
        return iterator, await anext(iterator)
    except StopAsyncIteration as exc:
        raise BackendUnavailable("upstream closed the stream before sending anything") from exc


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover - makes this an async generator


def _upstream_error_type(body: bytes) -> str | None:
    try:
        envelope = ErrorEnvelope.model_validate_json(body)
    except ValidationError:
        return None
    return envelope.error.code or envelope.error.type
