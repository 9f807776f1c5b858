"""Named fakes for meters: replayed counter readings and a device of constant power.

`ReplayNVML` stands in for the pynvml module (a process boundary: the NVIDIA driver);
`PrometheusExpositionFake` stands in for an exporter's `/metrics` (DCGM exporter, Kepler),
replaying recorded texts from proxy/energy/exposition_samples.py; `ConstantPowerMeter` simulates
a device drawing fixed watts, for workers on machines without counters in tests and demos; its
readings say "fake" wherever they are reported.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

from starlette.types import Receive, Scope, Send

from proxy.energy.base import Availability, EnergyMeter, EnergySample


class NVMLError(Exception):
    """What pynvml raises."""


class ReplayNVML:
    """The subset of pynvml the meter uses, replaying scripted readings per device."""

    NVMLError = NVMLError

    def __init__(self, energy_mj: list[list[float]] | None = None,
                 power_mw: list[list[float]] | None = None, fail_init: str | None = None):
        self._energy = [iter(values) for values in energy_mj or []]
        self._power = [iter(values) for values in power_mw or []]
        self._fail_init = fail_init
        count = max(len(self._energy), len(self._power))
        self._count = count

    def nvmlInit(self) -> None:
        """Initialise (or fail as scripted)."""
        if self._fail_init:
            raise NVMLError(self._fail_init)

    def nvmlDeviceGetCount(self) -> int:
        """Devices scripted."""
        return self._count

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        """The index is the handle."""
        return index

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: int) -> float:
        """The next scripted counter value (mJ)."""
        if handle >= len(self._energy):
            raise NVMLError("Not Supported")
        return _next(self._energy[handle])

    def nvmlDeviceGetPowerUsage(self, handle: int) -> float:
        """The next scripted power value (mW)."""
        if handle >= len(self._power):
            raise NVMLError("Not Supported")
        return _next(self._power[handle])


def _next(values: Iterator[float]) -> float:
    try:
        return next(values)
    except StopIteration as exc:
        raise NVMLError("replay exhausted") from exc


class ConstantPowerMeter(EnergyMeter):
    """A simulated device drawing `power_w` all the time (joules = watts x elapsed)."""

    def __init__(self, power_w: float) -> None:
        self._power_w = power_w
        self._start_s = time.monotonic()
        self.name = f"fake-constant-{power_w:g}W"

    def availability(self) -> Availability:
        """Always available (and labelled fake)."""
        return Availability(True, f"simulated device at {self._power_w:g} W (fake)")

    async def read(self) -> EnergySample:
        """Watts times seconds since creation."""
        now = time.monotonic()
        return EnergySample(self._power_w * (now - self._start_s), now)


class PrometheusExpositionFake:
    """An exporter's `/metrics` as an ASGI app: one recorded text per GET, the last repeating.

    An int among `responses` is answered as that HTTP status instead (an exporter failing
    mid-run). Serve it with a real server, or pass `httpx.ASGITransport(app=fake)` to a meter.
    """

    def __init__(self, responses: Sequence[str | int], path: str = "/metrics") -> None:
        if not responses:
            raise ValueError("a PrometheusExpositionFake needs at least one response")
        self._responses = list(responses)
        self.path = path
        self.gets = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the next recorded response."""
        if scope["type"] != "http":
            return
        if scope["path"] != self.path:
            return await _text(send, 404, "404 page not found\n")
        response = self._responses[min(self.gets, len(self._responses) - 1)]
        self.gets += 1
        if isinstance(response, int):
            return await _text(send, response, f"scripted failure {response}\n")
        await _text(send, 200, response)


async def _text(send: Send, status: int, body: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]})
    await send({"type": "http.response.body", "body": body.encode()})


class WallClockPowerMeter(EnergyMeter):
    """A simulated device at `power_w` whose counter is the wall clock: watts x Unix seconds.

    Every process on a host that reads it sees the same counter, so several workers (and the
    proxy's sampler) can share one fake device; its readings say "fake" wherever reported.
    """

    def __init__(self, power_w: float) -> None:
        self._power_w = power_w
        self.name = f"fake-wall-{power_w:g}W"

    def availability(self) -> Availability:
        """Always available (and labelled fake)."""
        return Availability(True, f"simulated device at {self._power_w:g} W, shared counter "
                                  "(fake)")

    async def read(self) -> EnergySample:
        """Watts times Unix seconds."""
        return EnergySample(self._power_w * time.time(), time.monotonic())
