"""Exchange: one request in flight — what serving has learnt so far, and its one frozen row.

Serving owns this mutable state; the components it asks return values (the Director a
`DirectiveDecision`, the Router a `RouteDecision`, the stream tap its outcome) and `record`
assembles them into the single frozen `LedgerRow` when the request ends.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import Receive

from proxy.accounting.provisional import ProvisionalAccounts, combined
from proxy.accounting.record import LedgerRow
from proxy.backends.base import Backend, PrefillPhase
from proxy.errors import LedgerStatus, ProxyError
from proxy.protocol.errors import ErrorEnvelope
from proxy.protocol.streaming import Usage
from proxy.routing.router import RouteDecision
from proxy.server.protocol import DisconnectHooks
from proxy.serving.deadline import Deadline
from proxy.serving.directing import NO_DIRECTIVE, DirectiveDecision
from proxy.serving.usage_estimate import tokens_from_chars

# Not an HTTP status anyone receives: nginx's "client closed request", used in the ledger.
CLIENT_CLOSED_REQUEST = 499


@dataclasses.dataclass(slots=True)
class Exchange:
    """Per-request timing and facts; `upstream_s` is time spent waiting on backends."""

    request_id: str
    created_at: datetime
    endpoint: str
    started_at: float  # perf_counter at arrival
    upstream_s: float = 0.0
    prompt_chars: int = 0
    api_key_id: str | None = None
    is_evaluator: bool = False
    requested_model: str | None = None
    stream: bool = False
    captured_request: str | None = None
    directive: DirectiveDecision = NO_DIRECTIVE
    route: RouteDecision = dataclasses.field(default_factory=RouteDecision)
    pool: str | None = None
    backend_kind: str | None = None
    backend_url: str | None = None
    upstream_model: str | None = None
    retries: int = 0
    decoding: str | None = None
    device_id: str | None = None  # the device that answered (set with the first byte)
    served_at: datetime | None = None  # admitted to the pool that answered
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_estimated: bool = False
    usage_source: str = "none"
    ttft_ms: float | None = None
    overhead_ms: float | None = None
    finish_reason: str | None = None
    failure: ProxyError | None = None  # why the last pool tried could not answer
    deadline: Deadline | None = None  # how long upstreams may take (None: only their timeouts)
    disconnect: DisconnectHooks | None = None  # the connection's (None: watch `receive`)
    recorded: bool = False  # its row has been handed to the ledger
    backend: Backend | None = None  # the backend holding this request (per-backend limits)
    accounts: ProvisionalAccounts | None = None  # the provisional energy of the finished row
    prefill: PrefillPhase | None = None  # another device prefilled it (disaggregated pool)
    served_pool: str | None = None  # the member pool that served it whole (its accounts apply)

    def elapsed_ms(self) -> float:
        """Milliseconds since the request reached the proxy."""
        return (time.perf_counter() - self.started_at) * 1000.0

    def overhead_so_far_ms(self) -> float:
        """Time so far that the proxy itself spent (everything but waiting on backends)."""
        return max(0.0, self.elapsed_ms() - self.upstream_s * 1000.0)

    def set_usage(self, usage: Usage | None, *, completion_estimate: int, source: str) -> None:
        """Upstream usage when present; otherwise a labelled estimate."""
        if usage is not None:
            self.prompt_tokens = usage.prompt_tokens
            self.completion_tokens = usage.completion_tokens
            self.usage_estimated = False
            self.usage_source = "upstream"
            return
        self.prompt_tokens = tokens_from_chars(self.prompt_chars)
        self.completion_tokens = completion_estimate
        self.usage_estimated = True
        self.usage_source = source

    def record(
        self,
        status: LedgerStatus,
        http_status: int,
        *,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> LedgerRow:
        """The request's one frozen row, with its provisional energy and carbon."""
        overhead_ms = self.overhead_ms if self.overhead_ms is not None else (
            self.overhead_so_far_ms())
        ended_at = datetime.now(UTC)
        phase: dict[str, Any] = {}
        if self.prefill is not None:
            footprint, phase = self._split(ended_at)
        else:
            footprint = (self.accounts.footprint(self.served_pool or self.pool,
                                                 self.prompt_tokens,
                                                 self.completion_tokens, self.served_at,
                                                 ended_at)
                         if self.accounts is not None else None)
        if footprint is None:
            return self._row(status, http_status, error_type, error_message, overhead_ms,
                             ended_at, **phase)
        return self._row(status, http_status, error_type, error_message, overhead_ms, ended_at,
                         **phase,
                         energy_j=footprint.energy_j, energy_method=footprint.energy_method,
                         ci_g_per_kwh=footprint.ci_g_per_kwh, ci_source=footprint.ci_source,
                         pue=footprint.pue, operational_g_co2e=footprint.operational_g_co2e,
                         embodied_g_co2e=footprint.embodied_g_co2e)

    def _split(self, ended_at: datetime) -> tuple[Any, dict[str, Any]]:
        """Each phase on its own device: prefill (prompt tokens), then decode (answer)."""
        prefill = self.prefill
        assert prefill is not None
        phase: dict[str, Any] = {
            "prefill_pool": prefill.pool, "prefill_device_id": prefill.device_id,
            "prefill_backend_url": prefill.backend_url, "prefill_ended_at": prefill.ended_at,
            "kv_transfer_bytes": prefill.kv_bytes}
        if self.accounts is None:
            return None, phase
        first = self.accounts.footprint(prefill.pool, self.prompt_tokens, 0, self.served_at,
                                        prefill.ended_at)
        rest = self.accounts.footprint(self.pool, 0, self.completion_tokens, prefill.ended_at,
                                       ended_at)
        if first is None or rest is None:
            return rest, phase
        phase |= {"prefill_energy_j": first.energy_j,
                  "prefill_operational_g_co2e": first.operational_g_co2e,
                  "prefill_embodied_g_co2e": first.embodied_g_co2e,
                  "prefill_energy_method": first.energy_method}
        return combined(rest, first), phase

    def _row(self, status: LedgerStatus, http_status: int, error_type: str | None,
             error_message: str | None, overhead_ms: float, ended_at: datetime,
             **footprint: Any) -> LedgerRow:  # footprint: energy columns, prefill phase
        directive, route = self.directive, self.route
        return LedgerRow(
            request_id=self.request_id, created_at=self.created_at, endpoint=self.endpoint,
            stream=self.stream, api_key_id=self.api_key_id,
            requested_model=self.requested_model, upstream_model=self.upstream_model,
            pool=self.pool, backend=self.backend_kind, backend_url=self.backend_url,
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens,
            usage_estimated=self.usage_estimated, usage_source=self.usage_source,
            ttft_ms=self.ttft_ms, latency_ms=self.elapsed_ms(), overhead_ms=overhead_ms,
            http_status=http_status, status=status, error_type=error_type,
            error_message=error_message[:2000] if error_message else None,
            finish_reason=self.finish_reason, retries=self.retries,
            is_evaluator=self.is_evaluator, decoding=self.decoding,
            route_policy=route.policy, predicted_output_tokens=route.predicted_output_tokens,
            predicted_energy_j=route.predicted_energy_j, directive_level=directive.level,
            directive_hash=directive.text_sha256, task_class=directive.task_class,
            device_id=self.device_id, served_at=self.served_at, ended_at=ended_at,
            served_pool=self.served_pool, captured_request=self.captured_request, **footprint,
        )

    def record_error(self, exc: ProxyError) -> LedgerRow:
        """The row for an error the client receives."""
        if self.prompt_tokens is None and self.prompt_chars:
            self.set_usage(None, completion_estimate=0, source="estimate_chars")
        message = f"{exc.message} ({exc.detail})" if exc.detail else exc.message
        return self.record(exc.ledger_status, exc.status_code,
                           error_type=exc.code or exc.error_type, error_message=message)


def error_body(exc: ProxyError) -> bytes:
    """OpenAI's envelope for a proxy error."""
    envelope = ErrorEnvelope.of(exc.message, exc.error_type, code=exc.code, param=exc.param)
    return envelope.to_json_bytes()


async def wait_for_disconnect(receive: Receive) -> None:
    """Return when the client goes away (the request body has already been read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
