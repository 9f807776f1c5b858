"""Exchange: one request in flight — its ledger row, its clock readings, how it ends."""

from __future__ import annotations

import dataclasses
import time

from starlette.types import Receive

from proxy.accounting.record import LedgerRow
from proxy.backends.base import Backend
from proxy.energy.accountant import EnergyAccountant
from proxy.errors import LedgerStatus, ProxyError
from proxy.protocol.errors import ErrorEnvelope
from proxy.protocol.streaming import Usage
from proxy.serving.usage_estimate import tokens_from_chars

# Not an HTTP status anyone receives: nginx's "client closed request", used in the ledger.
CLIENT_CLOSED_REQUEST = 499


@dataclasses.dataclass(slots=True)
class Exchange:
    """Per-request timing and accounting; `upstream_s` is time spent waiting on backends."""

    row: LedgerRow
    started_at: float
    upstream_s: float = 0.0
    prompt_chars: int = 0
    accountant: EnergyAccountant | None = None  # the pool's, once the request is admitted
    failure: ProxyError | None = None  # why the last pool tried could not answer
    backend: Backend | None = None  # the backend holding this request (per-backend limits)

    def elapsed_ms(self) -> float:
        """Milliseconds since the request reached the proxy."""
        return (time.perf_counter() - self.started_at) * 1000.0

    def overhead_ms(self) -> float:
        """Time so far that the proxy itself spent (everything but waiting on backends)."""
        return max(0.0, self.elapsed_ms() - self.upstream_s * 1000.0)

    def set_usage(self, usage: Usage | None, *, completion_estimate: int, source: str) -> None:
        """Upstream usage when present; otherwise a labelled estimate."""
        row = self.row
        if usage is not None:
            row.prompt_tokens = usage.prompt_tokens
            row.completion_tokens = usage.completion_tokens
            row.usage_estimated = False
            row.usage_source = "upstream"
            return
        row.prompt_tokens = tokens_from_chars(self.prompt_chars)
        row.completion_tokens = completion_estimate
        row.usage_estimated = True
        row.usage_source = source

    def end(
        self,
        status: LedgerStatus,
        http_status: int,
        *,
        error_type: str | None = None,
        error_message: str | None = None,
    ) -> LedgerRow:
        """Close the row; the caller submits it."""
        row = self.row
        row.status = status
        row.http_status = http_status
        row.error_type = error_type
        row.error_message = error_message[:2000] if error_message else None
        row.latency_ms = self.elapsed_ms()
        if row.overhead_ms is None:
            row.overhead_ms = self.overhead_ms()
        return row

    def end_with_error(self, exc: ProxyError) -> LedgerRow:
        """Close the row for an error the client receives."""
        if self.row.prompt_tokens is None and self.prompt_chars:
            self.set_usage(None, completion_estimate=0, source="estimate_chars")
        return self.end(
            exc.ledger_status,
            exc.status_code,
            error_type=exc.code or exc.error_type,
            error_message=exc.message,
        )


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
