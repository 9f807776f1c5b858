"""A request's deadline: how long the proxy waits on upstreams for it, across every attempt.

A non-streaming request gets `request_timeout_s` for its whole answer, a stream
`stream_first_byte_timeout_s` for its first byte (after that each chunk has the pool's
`read_timeout_s`). Both count from the request's arrival and cover every retry, back-off and
failover, so a hung upstream costs a client at most the deadline, not attempts x read timeout.
A client may shorten its own deadline with `X-Sprout-Timeout-S` (never lengthen it).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from proxy.errors import InvalidRequest

TIMEOUT_HEADER = "x-sprout-timeout-s"
DeadlineKind = Literal["total", "first_byte"]


@dataclasses.dataclass(frozen=True, slots=True)
class Deadline:
    """Seconds from arrival, what they bound, and who set them."""

    limit_s: float
    kind: DeadlineKind
    source: Literal["default", "header"]

    @property
    def code(self) -> str:
        """The error code the client sees and the row's `error_type`: which deadline fired."""
        return f"{self.kind}_deadline_exceeded"

    def message(self) -> str:
        """What the client is told."""
        what = "an answer" if self.kind == "total" else "the stream's first byte"
        who = "X-Sprout-Timeout-S" if self.source == "header" else "the proxy's default"
        return f"No upstream gave {what} within {self.limit_s:g} s (deadline set by {who})."


def request_deadline(header: str | None, stream: bool, total_s: float,
                     first_byte_s: float) -> Deadline:
    """The deadline for a request: the default for its kind, or the client's shorter one."""
    kind: DeadlineKind = "first_byte" if stream else "total"
    default_s = first_byte_s if stream else total_s
    if header is None:
        return Deadline(default_s, kind, "default")
    try:
        asked_s = float(header)
    except ValueError:
        asked_s = math.nan
    if not math.isfinite(asked_s) or asked_s <= 0:
        raise InvalidRequest(
            f"Invalid value for header 'X-Sprout-Timeout-S': {header[:40]!r}; expected a "
            "positive number of seconds.", code="invalid_timeout", param="X-Sprout-Timeout-S")
    if asked_s >= default_s:
        return Deadline(default_s, kind, "default")
    return Deadline(asked_s, kind, "header")
