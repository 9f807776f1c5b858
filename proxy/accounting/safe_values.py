"""Ledger values every backend accepts: no NUL, valid UTF-8, strings within their column.

Clients choose many of a row's strings (the model name, error texts echoed back, captured
prompts), and PostgreSQL rejects a NUL byte or an over-long value for the whole batch. Values
are made safe in the writer's thread, off the request path: NUL becomes U+FFFD, unencodable
characters are replaced, strings are clipped to their column, integers to 32 bits, and
non-finite floats become NULL. The journal and spill files keep the original (JSON carries
them losslessly).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Integer, String, Table

REPLACEMENT = "\ufffd"
INT32_MAX = 2**31 - 1
INTEGER = -1  # the limit marking a 32-bit integer column


def column_limits(table: Table, names: Iterable[str]) -> tuple[int | None, ...]:
    """Each named column's limit: a string length, INTEGER, or None (no limit)."""
    limits: list[int | None] = []
    for name in names:
        kind = table.c[name].type
        if isinstance(kind, String) and kind.length:
            limits.append(kind.length)
        elif isinstance(kind, Integer):
            limits.append(INTEGER)
        else:
            limits.append(None)
    return tuple(limits)


def safe_text(value: str, limit: int | None) -> str:
    """`value` as every backend stores it."""
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from JSON escapes
        value = value.encode("utf-8", "replace").decode("utf-8")
    if limit is not None and len(value) > limit:
        value = value[:limit]
    return value


def safe_values(values: Sequence[Any], limits: Sequence[int | None]) -> Sequence[Any]:
    """A row's values, position by position with their limits (the same object if all safe)."""
    for value, limit in zip(values, limits, strict=True):
        if _safe(value, limit) is not value:
            return tuple(_safe(v, lim) for v, lim in zip(values, limits, strict=True))
    return values


def _safe(value: Any, limit: int | None) -> Any:
    if isinstance(value, str):
        if "\x00" not in value and value.isascii() and (
                limit is None or limit == INTEGER or len(value) <= limit):
            return value  # the common case, unchanged
        return safe_text(value, limit if limit != INTEGER else None)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if limit == INTEGER and isinstance(value, int) and not isinstance(value, bool):
        # An upstream's absurd usage count is clipped, not allowed to refuse the row.
        return max(-INT32_MAX - 1, min(INT32_MAX, value))
    return value
