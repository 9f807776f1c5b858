"""LedgerRow: one request's frozen accounting record, built once when the request ends."""

from __future__ import annotations

import dataclasses
import operator
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_json

from proxy.errors import LedgerStatus


@dataclasses.dataclass(frozen=True, slots=True)
class LedgerRow:
    """Assembled by `serving/` from the values its owners returned; journaled, then written.

    Its energy is *provisional* (an estimate from the pool's hardware profile, labelled so)
    until settlement splits the device's metered windows among every replica's rows.
    """

    request_id: str
    created_at: datetime
    endpoint: str
    stream: bool = False
    api_key_id: str | None = None
    requested_model: str | None = None
    upstream_model: str | None = None
    pool: str | None = None
    backend: str | None = None
    backend_url: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    usage_estimated: bool = False
    usage_source: str = "none"
    ttft_ms: float | None = None
    latency_ms: float = 0.0
    overhead_ms: float | None = None
    http_status: int = 0
    status: LedgerStatus = "ok"
    error_type: str | None = None
    error_message: str | None = None
    finish_reason: str | None = None
    retries: int = 0
    is_evaluator: bool = False
    decoding: str | None = None
    route_policy: str | None = None
    predicted_output_tokens: float | None = None
    predicted_energy_j: float | None = None
    directive_level: str | None = None
    directive_hash: str | None = None
    task_class: str | None = None
    energy_j: float | None = None
    energy_method: str | None = None
    ci_g_per_kwh: float | None = None
    ci_source: str | None = None
    operational_g_co2e: float | None = None
    embodied_g_co2e: float | None = None
    pue: float | None = None
    # What settlement needs: the device that served it and when it held it (UTC).
    device_id: str | None = None
    served_at: datetime | None = None
    ended_at: datetime | None = None
    # A disaggregated request's prefill phase (its own device, served_at to prefill_ended_at)
    # and the KV cache bytes moved to the decode device; its footprint is in the totals above.
    prefill_pool: str | None = None
    prefill_device_id: str | None = None
    prefill_backend_url: str | None = None
    prefill_ended_at: datetime | None = None
    kv_transfer_bytes: int | None = None
    prefill_energy_j: float | None = None
    prefill_operational_g_co2e: float | None = None
    prefill_embodied_g_co2e: float | None = None
    prefill_energy_method: str | None = None
    # A disaggregated pool's fallback: the member pool that served it whole (charged for it).
    served_pool: str | None = None
    # The client's request as received, for keys that opted in to capture: it goes to the
    # `prompt_samples` table (with retention), never into `requests`.
    captured_request: str | None = None

    def as_db_values(self) -> dict[str, Any]:
        """Column values for an INSERT into `requests`."""
        return dict(zip(DB_COLUMNS, self.db_tuple(), strict=True))

    def db_tuple(self) -> tuple[Any, ...]:
        """The values in `DB_COLUMNS` order (COPY writes these)."""
        return _db_values(self)

    def sample_values(self) -> dict[str, Any] | None:
        """The `prompt_samples` row, if this request was captured."""
        if self.captured_request is None:
            return None
        return {"sample_id": self.request_id, "captured_at": self.created_at,
                "api_key_id": self.api_key_id, "endpoint": self.endpoint,
                "model": self.requested_model or "", "task_class": self.task_class,
                "request_json": self.captured_request}

    def as_json_values(self) -> dict[str, Any]:
        """JSON-safe values for the journal and spill file (the captured request included)."""
        values = self.as_db_values()
        for name in _TIMES:
            value = values[name]
            values[name] = value.isoformat() if value is not None else None
        values["captured_request"] = self.captured_request
        return values

    @classmethod
    def from_json_values(cls, values: dict[str, Any]) -> LedgerRow:
        """Inverse of `as_json_values` (unknown keys from newer versions are ignored)."""
        known = {field.name for field in dataclasses.fields(cls)}
        kept = {key: value for key, value in values.items() if key in known}
        for name in _TIMES:
            value = kept.get(name)
            if isinstance(value, str):
                moment = datetime.fromisoformat(value)
                kept[name] = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return cls(**kept)


FIELDS = tuple(field.name for field in dataclasses.fields(LedgerRow))
DB_COLUMNS = tuple(name for name in FIELDS if name != "captured_request")
_TIMES = ("created_at", "served_at", "ended_at", "prefill_ended_at")
_values = operator.attrgetter(*FIELDS)
_db_values = operator.attrgetter(*DB_COLUMNS)
_TIME_INDEXES = tuple(FIELDS.index(name) for name in _TIMES)


def journal_line(row: LedgerRow) -> bytes:
    """The row as one JSON array in `FIELDS` order, newline-terminated.

    The request path's cheapest durable form: an array, not an object, encoded by pydantic's
    Rust serialiser (a quarter of the standard library encoder's time, #16), compact UTF-8
    with NaN and infinities written as the standard library writes them, and the times
    turned to ISO text first, as `as_json_values` does.
    """
    values = list(_values(row))
    for index in _TIME_INDEXES:
        value = values[index]
        if value is not None:
            values[index] = value.isoformat()
    return to_json(values, inf_nan_mode="constants") + b"\n"


def from_journal(names: list[str], values: list[Any]) -> LedgerRow:
    """A row from a journal line written with the field `names` of its segment's header."""
    return LedgerRow.from_json_values(dict(zip(names, values, strict=True)))
