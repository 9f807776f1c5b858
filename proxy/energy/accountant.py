"""EnergyAccountant: one pool's meter windows, the requests in flight, and their settlement.

A background task reads the pool's meter every `tick_s` and records a window per interval;
without a working meter it synthesises the window from the hardware profile (active watts over
the time some request was in flight, idle watts otherwise), and rows say `estimated`. A
window closes once every request that started before its end has finished; then its joules
(and seconds, for embodied carbon) are split by `attribution.attribute`. A request's row is
settled, filled and handed to the ledger once every window it overlapped is closed. Nothing
here runs on the request path except `begin`/`finish`, which only append to lists.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

from proxy.accounting.record import LedgerRow
from proxy.energy.attribution import Flight, Window, attribute
from proxy.energy.base import Availability, EnergyMeter, EnergySample, MeterUnavailable
from proxy.energy.estimate import HardwareProfile

log = logging.getLogger(__name__)

RETRY_METER_S = 10.0
Settle = Callable[[LedgerRow, float, float, str], None]  # row, joules, busy seconds, method


@dataclasses.dataclass
class _Open:
    row: LedgerRow
    start_s: float
    end_s: float | None = None
    prefill_tokens: int = 0
    decode_tokens: int = 0
    energy_j: float = 0.0
    busy_s: float = 0.0
    shared: bool = False
    estimated: bool = False


@dataclasses.dataclass
class AccountantStats:
    """Totals for /health and tests: metered = attributed + idle (over closed windows)."""

    metered_j: float = 0.0
    window_s: float = 0.0
    attributed_j: float = 0.0
    idle_j: float = 0.0
    windows: int = 0
    method: str = "starting"
    meter: str = ""


class EnergyAccountant:
    """Per pool; `start` in the event loop, `aclose` settles everything left."""

    def __init__(self, meter: EnergyMeter, profile: HardwareProfile, settle: Settle, *,
                 tick_s: float = 0.5, prefill_weight: float = 1.0,
                 decode_weight: float = 4.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._meter = meter
        self._profile = profile
        self._settle = settle
        self._tick_s = tick_s
        self._weights = (prefill_weight, decode_weight)
        self._clock = clock
        self._open: dict[str, _Open] = {}
        self._windows: list[Window] = []
        self._estimated: list[bool] = []
        self._last_sample: EnergySample | None = None
        self._last_at: float | None = None
        self._retry_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.stats = AccountantStats(meter=meter.name)

    def meter_availability(self) -> Availability:
        """The pool meter's own word (estimates are used while it is unavailable)."""
        return self._meter.availability()

    def begin(self, row: LedgerRow) -> None:
        """The request reached the device (O(1); request path)."""
        self._open[row.request_id] = _Open(row, self._clock())

    def withdraw(self, row: LedgerRow) -> None:
        """The request moved to another pool before any byte: forget it here (not settled)."""
        self._open.pop(row.request_id, None)

    def finish(self, row: LedgerRow) -> None:
        """The request left the device; its row is settled later (O(1); request path)."""
        flight = self._open.get(row.request_id)
        if flight is None:  # never began (rejected before the pool): nothing to meter
            self._settle(row, 0.0, 0.0, "none")
            return
        flight.end_s = self._clock()
        flight.prefill_tokens = row.prompt_tokens or 0
        flight.decode_tokens = row.completion_tokens or 0

    def start(self) -> None:
        """Start ticking."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="energy-accountant")

    async def _run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self._tick_s)

    async def tick(self) -> None:
        """Record the window since the last tick, close what can close, settle rows."""
        now = self._clock()
        sample: EnergySample | None = None
        if now >= self._retry_at:
            try:
                sample = await self._meter.read()
            except MeterUnavailable as exc:
                if self.stats.method != "estimated":
                    log.info("pool meter %s unavailable (%s): estimating", self._meter.name, exc)
                self._retry_at = now + RETRY_METER_S  # do not poll a missing meter every tick
        if self._last_at is not None and now > self._last_at:
            if sample is not None and self._last_sample is not None:
                joules, estimated = max(0.0, sample.energy_j - self._last_sample.energy_j), False
            else:  # no reading at one end of the interval: estimate it from the profile
                joules, estimated = self._estimate_j(self._last_at, now), True
            self._windows.append(Window(self._last_at, now, joules))
            self._estimated.append(estimated)
        self.stats.method = "measured" if sample is not None else "estimated"
        self._last_sample = sample
        self._last_at = now
        self._close_windows()

    def _estimate_j(self, start: float, end: float) -> float:
        """Active watts while some request was in flight, idle watts otherwise."""
        busy = _union_length([(max(f.start_s, start), min(f.end_s or end, end))
                              for f in self._open.values()])
        idle = max(0.0, (end - start) - busy)
        return self._profile.active_w * busy + self._profile.idle_w * idle

    def _close_windows(self, final: bool = False) -> None:
        closable = []
        while self._windows:
            window = self._windows[0]
            blocked = any(f.end_s is None and f.start_s < window.end_s
                          for f in self._open.values())
            if blocked and not final:
                break
            closable.append((self._windows.pop(0), self._estimated.pop(0)))
        for window, estimated in closable:
            self._split(window, estimated)
        self._settle_done(final)

    def _split(self, window: Window, estimated: bool) -> None:
        flights = [Flight(rid, f.start_s, f.end_s if f.end_s is not None else window.end_s,
                          f.prefill_tokens, f.decode_tokens)
                   for rid, f in self._open.items()
                   if f.start_s < window.end_s and (f.end_s is None or f.end_s > window.start_s)]
        result = attribute([window], flights, prefill_weight=self._weights[0],
                           decode_weight=self._weights[1])
        self.stats.metered_j += window.energy_j
        self.stats.window_s += window.end_s - window.start_s
        self.stats.idle_j += result.idle_j
        self.stats.windows += 1
        for request_id, joules in result.energy_j.items():
            flight = self._open[request_id]
            flight.energy_j += joules
            flight.busy_s += result.busy_s[request_id]
            flight.shared = flight.shared or request_id in result.shared
            flight.estimated = flight.estimated or estimated
            self.stats.attributed_j += joules

    def _settle_done(self, final: bool) -> None:
        horizon = self._windows[0].start_s if self._windows else (self._last_at or 0.0)
        for request_id, flight in list(self._open.items()):
            if flight.end_s is None and not final:
                continue
            if not final and (flight.end_s or 0.0) > horizon:
                continue  # part of its time is in a window not yet closed (or not yet read)
            del self._open[request_id]
            if flight.estimated:
                method = "estimated"
            else:
                method = "apportioned" if flight.shared else "measured"
            self._settle(flight.row, flight.energy_j, flight.busy_s, method)

    async def aclose(self) -> None:
        """Stop ticking; take a last reading and settle every row (none is lost)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self.tick()
        self._close_windows(final=True)
        await self._meter.aclose()


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total
