"""RemoteMeter: a worker's device counters over HTTP (`GET /metrics/energy`).

Lets a proxy on one host meter a pool on another (GPU box, M1 machine), and, with the worker's
meter-only mode, a pool served by vLLM or llama.cpp. The worker answers
`{"available": bool, "meter": str, "reason": str, "energy_j": float}` with cumulative joules.
"""

from __future__ import annotations

import time
from datetime import datetime

import httpx
from pydantic import BaseModel

from proxy.energy.base import Availability, EnergyMeter, EnergySample, MeterUnavailable
from proxy.httpclient import job_client


class RemoteEnergy(BaseModel):
    """The worker's energy document."""

    available: bool
    meter: str
    reason: str = ""
    energy_j: float = 0.0
    parts_j: dict[str, float] = {}  # per device, when the worker meters several
    # The device this counter belongs to (host and GPU UUID or CPU package); the worker sends
    # the same id on every response (x-sprout-device), so rows and samples meet.
    device: str | None = None
    # When the worker read its counter (UTC): the sampler places the reading there, within
    # the time it asked and the time the answer came.
    read_at: datetime | None = None


class RemoteMeter(EnergyMeter):
    """Polls one URL; availability reflects the last answer."""

    name = "remote"

    def __init__(self, url: str, timeout_s: float = 2.0) -> None:
        self._url = url
        # No keep-alive: behind a Service URL each read opens a connection, so the balancer
        # spreads the reads over every pod (a kept connection would read one pod forever).
        self._client = job_client(
            timeout_s, limits=httpx.Limits(max_keepalive_connections=0))
        self._last = Availability(False, "not read yet")

    def availability(self) -> Availability:
        """As of the last read."""
        return self._last

    async def read(self) -> EnergySample:
        """Cumulative joules the worker reports."""
        try:
            response = await self._client.get(self._url)
            response.raise_for_status()
            document = RemoteEnergy.model_validate_json(response.content)
        except (httpx.HTTPError, ValueError) as exc:
            self._last = Availability(False, f"remote meter {self._url}: {exc}")
            raise MeterUnavailable(self._last.reason) from exc
        self.device_id = document.device
        if not document.available:
            self._last = Availability(False, f"remote {document.meter}: {document.reason}")
            raise MeterUnavailable(self._last.reason)
        self._last = Availability(True, f"remote {document.meter} at {self._url}")
        self.name = f"remote:{document.meter}"
        return EnergySample(document.energy_j, time.monotonic(), document.device,
                            document.read_at)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
