"""The proxy's exception tree: every failure a client can see, with its OpenAI error shape."""

from __future__ import annotations

from typing import Literal

# `interrupted`: the proxy itself ended the request (its shutdown grace ran out).
LedgerStatus = Literal["ok", "upstream_error", "timeout", "client_disconnect", "rejected",
                       "interrupted"]


class ProxyError(Exception):
    """An error answered to the client in OpenAI's envelope and recorded in the ledger."""

    status_code = 500
    error_type = "server_error"
    ledger_status: LedgerStatus = "upstream_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}
        # For the row only (operators), never the client: e.g. which backend failed and how.
        self.detail = detail


class InvalidRequest(ProxyError):
    """The request body or its parameters are wrong (400)."""

    status_code = 400
    error_type = "invalid_request_error"
    ledger_status: LedgerStatus = "rejected"


class AuthenticationFailed(ProxyError):
    """Missing or unknown API key (401)."""

    status_code = 401
    error_type = "authentication_error"
    ledger_status: LedgerStatus = "rejected"


class NotFound(ProxyError):
    """Unknown model or route (404)."""

    status_code = 404
    error_type = "invalid_request_error"
    ledger_status: LedgerStatus = "rejected"


class PayloadTooLarge(InvalidRequest):
    """Body larger than the configured limit (413)."""

    status_code = 413


class BodyTimedOut(InvalidRequest):
    """The client did not send its whole body in time (408)."""

    status_code = 408


class TooManyConnections(ProxyError):
    """The process has more open connections than its cap (503)."""

    status_code = 503
    ledger_status: LedgerStatus = "rejected"


class ShuttingDown(ProxyError):
    """The proxy is stopping and the request's grace period is over (503)."""

    status_code = 503
    ledger_status: LedgerStatus = "interrupted"


class Overloaded(ProxyError):
    """Every pool that serves the model is at its concurrency and queue limit (429)."""

    status_code = 429
    error_type = "rate_limit_error"
    ledger_status: LedgerStatus = "rejected"


class UpstreamRateLimited(Overloaded):
    """Every backend answered 429 (the client sees 429; the ledger blames the upstream)."""

    ledger_status: LedgerStatus = "upstream_error"


class UpstreamFailed(ProxyError):
    """No backend answered usefully before the first byte (502)."""

    status_code = 502
    error_type = "upstream_error"
    ledger_status: LedgerStatus = "upstream_error"


class UpstreamTimedOut(ProxyError):
    """The backend did not answer in time (504)."""

    status_code = 504
    error_type = "timeout_error"
    ledger_status: LedgerStatus = "timeout"


class DeadlineExceeded(UpstreamTimedOut):
    """The request's own deadline passed, across every attempt (504; never failed over)."""


class BackendUnavailable(Exception):
    """A backend could not be used for this attempt; raised by adapters, retried by serving."""

    def __init__(self, message: str, *, timed_out: bool = False, status_code: int | None = None):
        super().__init__(message)
        self.timed_out = timed_out
        self.status_code = status_code


class KeyRateLimited(Overloaded):
    """A key's requests or tokens per minute are used up, fleet-wide (429, as OpenAI's)."""

    def __init__(self, message: str, *, kind: str, limit: int, remaining: int,
                 retry_after_s: int) -> None:
        super().__init__(message, code="rate_limit_exceeded", headers={
            "retry-after": str(retry_after_s),
            f"x-ratelimit-limit-{kind}": str(limit),
            f"x-ratelimit-remaining-{kind}": str(remaining),
            f"x-ratelimit-reset-{kind}": f"{retry_after_s}s"})
        self.error_type = kind  # OpenAI's rate-limit errors are typed "requests" or "tokens"


class CarbonBudgetExceeded(Overloaded):
    """A key has spent its carbon budget for the period (429 `insufficient_quota`)."""

    error_type = "insufficient_quota"

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, code="carbon_budget_exceeded",
                         headers={"retry-after": str(retry_after_s)})
