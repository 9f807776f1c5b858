"""MeterSampler: the leader reads every configured meter once per tick into `energy_samples`.

Exactly one process samples (the jobs leader; on SQLite the one process), so each device is
read once fleet-wide however many replicas run. A reading that names its device (a worker
behind a Service URL) is stored under that device; otherwise under the target's device id.
Unavailable meters are recorded as such in `energy_devices`, and their rows are estimated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select, update

from proxy.accounting.tables import energy_devices, energy_samples
from proxy.energy.base import EnergyMeter, MeterUnavailable
from proxy.energy.devices import MeterTarget
from proxy.jobs.leader import LeaderLock

log = logging.getLogger(__name__)

DEVICE_STATE_EVERY = 10  # ticks between `energy_devices` updates (availability, pools)


class MeterSampler:
    """`start` runs the tick loop; `aclose` stops it and closes the meters."""

    def __init__(self, engine: Engine, meters: list[tuple[MeterTarget, EnergyMeter]],
                 leader: LeaderLock, *, tick_s: float = 0.5,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._meters = meters
        self._leader = leader
        self._tick_s = tick_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._ticks = 0
        self._state: dict[str, tuple[str, str, bool, str]] = {}  # device -> meter, pools, ok, why
        self.samples = 0
        self._last_j: dict[str, float] = {}

    def start(self) -> None:
        """Start ticking (inside the event loop)."""
        if self._task is None and self._meters:
            self._task = asyncio.create_task(self._run(), name="meter-sampler")

    async def _run(self) -> None:
        while True:
            try:  # the lock caches its answer for a second: most checks are no round trip
                if await asyncio.to_thread(self._leader.is_leader):
                    await self.tick()
            except Exception:
                log.exception("meter sampling failed; retrying")
            self._ticks += 1
            await asyncio.sleep(self._tick_s)

    async def tick(self) -> int:
        """Read every meter once and store the readings; returns how many were stored."""
        results = await asyncio.gather(*(self._read(target, meter)
                                         for target, meter in self._meters))
        # One sample per device per tick. Workers sharing a device (one counter, several
        # URLs) answer at slightly different moments; two readings of one counter in one
        # tick could land out of order and look like a counter reset.
        latest: dict[str, dict[str, object]] = {}
        for row in results:
            if row is None:
                continue
            known = latest.get(str(row["device_id"]))
            if known is None or float(row["energy_j"]) > float(known["energy_j"]):  # type: ignore[arg-type]
                latest[str(row["device_id"])] = row
        rows = []
        for device, row in latest.items():
            if self._last_j.get(device) == row["energy_j"]:
                # An exporter that refreshes every few seconds (DCGM's collect interval)
                # repeats its value: only a new value marks the end of a window, or joules
                # would land in whichever 0.5 s happened to see the refresh.
                continue
            self._last_j[device] = float(row["energy_j"])  # type: ignore[arg-type]
            rows.append(row)
        if rows:
            await asyncio.to_thread(self._store, rows)
        if self._ticks % DEVICE_STATE_EVERY == 0:
            await asyncio.to_thread(self._store_state)
        self.samples += len(rows)
        return len(rows)

    async def _read(self, target: MeterTarget,
                    meter: EnergyMeter) -> dict[str, object] | None:
        asked = self._clock()
        try:
            sample = await meter.read()
        except MeterUnavailable as exc:  # under the device it names, if it named one
            self._note(meter.device_id or target.device_id, meter.name, target.pool, False,
                       str(exc))
            return None
        except Exception as exc:  # a meter must never stop the others
            self._note(target.device_id, meter.name, target.pool, False, repr(exc))
            return None
        device = sample.device_id or target.device_id
        self._note(device, meter.name, target.pool, True, "")
        # The counter was read somewhere between asking and the answer. A worker says when (a
        # busy one reads late in that span, then answers at once); clocks of two machines may
        # disagree, so its time is kept within the span. Others: the midpoint, which halves
        # the worst timing error of the window's boundary.
        answered = self._clock()
        if sample.read_at is not None:
            read_at = min(max(sample.read_at, asked), answered)
        else:
            read_at = asked + (answered - asked) / 2
        return {"device_id": device, "sampled_at": read_at, "energy_j": sample.energy_j,
                "meter": meter.name[:256]}

    def _note(self, device: str, meter: str, pool: str, available: bool, reason: str) -> None:
        known = self._state.get(device)
        pools = pool if known is None or not known[1] else ",".join(
            sorted(set(known[1].split(",")) | {pool}))
        self._state[device] = (meter, pools, available, reason)

    def _store(self, rows: list[dict[str, object]]) -> None:
        with self._engine.begin() as connection:
            connection.execute(insert(energy_samples), rows)

    def _store_state(self) -> None:
        now = self._clock()
        with self._engine.begin() as connection:
            known = {device for (device,) in connection.execute(
                select(energy_devices.c.device_id))}
            for device, (meter, pools, available, reason) in self._state.items():
                values = {"meter": meter[:256], "pools": pools[:512], "available": available,
                          "reason": reason or None}
                if available:
                    values["last_sample_at"] = now
                if device in known:
                    connection.execute(update(energy_devices).where(
                        energy_devices.c.device_id == device).values(**values))
                else:
                    connection.execute(insert(energy_devices).values(device_id=device, **values))

    async def aclose(self) -> None:
        """Stop and close every meter."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, meter in self._meters:
            with contextlib.suppress(Exception):
                await meter.aclose()
