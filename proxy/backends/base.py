"""The transport seam: `Backend.send` returns an `UpstreamResponse` or raises."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime

from proxy.pools.config import Endpoint
from proxy.protocol.base import WireModel


@dataclasses.dataclass(frozen=True, slots=True)
class UpstreamRequest:
    """What serving asks a backend to do: an endpoint, the body (upstream model set), stream."""

    endpoint: Endpoint
    payload: WireModel
    stream: bool


@dataclasses.dataclass(frozen=True, slots=True)
class PrefillPhase:
    """The prefill leg of a disaggregated request (its own device), as the ledger records it."""

    pool: str
    backend_url: str
    device_id: str
    ended_at: datetime  # the decode phase starts here
    kv_bytes: int | None  # what moved (the decode's report, else the prefill's, else estimated)


class UpstreamResponse(abc.ABC):
    """An upstream answer whose status is known and whose body is read once."""

    status_code: int
    content_type: str
    decoding: str | None = None  # from a worker's x-sprout-decoding header
    device: str | None = None  # the device that served it, from a worker's x-sprout-device
    kv_bytes: int | None = None  # KV cache bytes held or pulled, from x-sprout-kv-bytes
    prefill: PrefillPhase | None = None  # set when another device prefilled (disaggregated)
    served_pool: str | None = None  # a disaggregated pool's fallback: the member serving whole

    @abc.abstractmethod
    async def read(self) -> bytes:
        """The whole body; raises `BackendUnavailable` on read failure or timeout."""

    @abc.abstractmethod
    def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives; raises `BackendUnavailable` on failure or timeout."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release the connection; an unfinished upstream request is cancelled."""


class Backend(abc.ABC):
    """One upstream server (or provider endpoint) of a pool."""

    kind: str
    url: str  # what is shown (rows, admin, logs): credentials hidden (proxy/redact.py)
    target_url: str  # what is connected to, credentials included

    @abc.abstractmethod
    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """Send the request and return once the status is known."""

    async def aclose(self) -> None:  # noqa: B027 - adapters without resources need nothing
        """Release long-lived resources."""


class BufferedResponse(UpstreamResponse):
    """A response whose body is already in memory (used by library-backed adapters)."""

    def __init__(self, status_code: int, body: bytes, content_type: str = "application/json"):
        self.status_code = status_code
        self.content_type = content_type
        self._body = body

    async def read(self) -> bytes:
        """The body."""
        return self._body

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body in one piece."""
        yield self._body

    async def aclose(self) -> None:
        """Nothing to release."""
