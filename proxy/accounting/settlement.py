"""Settlement: each device's windows split among every replica's rows, fleet-wide, once.

Runs on the jobs leader only (PostgreSQL advisory lock; on SQLite the one process), in a child
process of its own (`SettlementJob`). Rows are
written when their request ends, carrying a provisional estimate; samples of each device's
cumulative counter are written by the leader's sampler (`proxy/energy/sampler.py`). Each run,
per device:

1. **Horizon.** A window may close only when no row that overlaps it can still arrive: every
   live replica's heartbeat (`replicas`) says when its oldest request in flight on the
   device's pools (a disaggregated pool's requests count on both its member pools) started
   and when its oldest row not yet in the database arrived. The
   horizon is the earliest of those (and of the heartbeats). A request held open longer than
   `max_hold_s` no longer holds the horizon back: windows close without its share, and its row
   is labelled `estimated` if nothing was attributed to it.
2. **Windows.** Consecutive samples up to the horizon make windows (a counter that went
   backwards, a reset, gives an estimated window). A device that has never produced a sample
   gets windows synthesised from its pool's hardware profile over the rows themselves.
3. **Split.** `energy/attribution.attribute` shares each window among the rows from all
   replicas that overlapped it (token-weighted, prefill against decode); a disaggregated
   row is two phases (`accounting/phases.py`), its prefill split on the prefill device and
   its decode on the decode device, each final on its own device. Shares accumulate
   on the row (`settled_j`, `settled_busy_s`, `settled_shared`); once the horizon has passed a
   row's end it is final: `energy_method` becomes `measured` (alone on the device),
   `apportioned` (shared) or `estimated`, with its gCO2e recomputed.
4. **Record.** One `energy_windows` row per device per run: metered = attributed + idle.

Everything here is off the request path; each device settles in its own transaction.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import itertools
import json
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, delete, func, insert, or_, select, update
from sqlalchemy.pool import NullPool

from proxy.accounting.db import make_engine
from proxy.accounting.phases import (
    PREFILL_FINAL,
    PREFILL_PARTIAL,
    ROW_FINAL,
    ROW_PARTIAL,
    Phase,
    finish_late_prefills,
    phases_on,
    unsettled_prefill_devices,
    update_phases,
)
from proxy.accounting.provisional import PROVISIONAL, PoolAccounts
from proxy.accounting.tables import energy_devices, energy_samples, energy_windows, replicas
from proxy.accounting.tables import requests as requests_table
from proxy.carbon.embodied import operational_g
from proxy.energy.attribution import Window, attribute, synthesise
from proxy.jobs.children import low_priority_executor
from proxy.jobs.leader import LeaderLock

log = logging.getLogger(__name__)

MAX_SAMPLES_PER_RUN = 5_000
RUN_TIMEOUT_S = 300.0
SAMPLE_RETENTION = timedelta(hours=6)  # samples kept behind a device's settled point


class SettlementConflict(Exception):
    """Another process moved a device's settled point during this run."""


@dataclasses.dataclass(frozen=True, slots=True)
class SettlementConfig:
    """Timings (Settings: `settlement_*`)."""

    replica_timeout_s: float = 15.0  # a replica silent this long is taken as dead
    margin_s: float = 1.0  # windows end at least this far in the past
    max_hold_s: float = 600.0  # no request holds a window open longer than this
    stale_meter_s: float = 60.0  # a metered device silent this long: its rows are estimated
    prefill_weight: float = 1.0
    decode_weight: float = 4.0


@dataclasses.dataclass
class SettlementStats:
    """Totals since start, for logs and tests."""

    runs: int = 0
    windows: int = 0
    settled_rows: int = 0
    metered_j: float = 0.0
    idle_j: float = 0.0


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


class SettlementJob:
    """Scheduled every `settlement_interval_s` on every replica; on the leader it settles.

    The work (a few tens of microseconds of Python per row) runs in a child process, so it
    never holds the serving event loop's interpreter lock; the child opens its own database
    connection for each run.
    """

    def __init__(self, database_url: str, pools: dict[str, PoolAccounts], leader: LeaderLock,
                 config: SettlementConfig | None = None) -> None:
        self._url = database_url
        self._pools = pools
        self._leader = leader
        self.config = config or SettlementConfig()
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self.stats = SettlementStats()

    @property
    def leading(self) -> bool:
        """Whether this process led at its last check."""
        return self._leader.held

    async def run_once(self) -> str:
        """Settle what can be settled now (leader only)."""
        if not await asyncio.to_thread(self._leader.is_leader):
            return "follower"
        if self._executor is None:
            self._executor = low_priority_executor()
        loop = asyncio.get_running_loop()
        try:
            stats = await asyncio.wait_for(loop.run_in_executor(
                self._executor, settle_once, self._url, self._pools, self.config),
                timeout=RUN_TIMEOUT_S)
        except (concurrent.futures.process.BrokenProcessPool, TimeoutError) as exc:
            # The child died (an OOM kill) or hangs: a fresh one next run, never none.
            log.warning("settlement child failed (%s); starting a new one", type(exc).__name__)
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
            return "settlement child restarted"
        for field in dataclasses.fields(stats):
            setattr(self.stats, field.name,
                    getattr(self.stats, field.name) + getattr(stats, field.name))
        return f"settled {stats.settled_rows} rows"

    async def aclose(self) -> None:
        """Stop the child process, after its current run (the lead is released after this)."""
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.to_thread(executor.shutdown, True, cancel_futures=True)


def settle_once(database_url: str, pools: dict[str, PoolAccounts],
                config: SettlementConfig) -> SettlementStats:
    """One settlement pass with a connection of its own (runs in the child process)."""
    engine = make_engine(database_url, poolclass=NullPool)
    try:
        settlement = Settlement(engine, pools, config)
        settlement.settle()
        return settlement.stats
    finally:
        engine.dispose()


class Settlement:
    """The settlement logic over one database (the leader calls `settle`; tests do too)."""

    def __init__(self, engine: Engine, pools: dict[str, PoolAccounts],
                 config: SettlementConfig | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._pools = pools
        self.config = config or SettlementConfig()
        self._clock = clock
        self.stats = SettlementStats()

    def settle(self) -> str:
        """Blocking: one pass over every device."""
        now = self._clock()
        with self._engine.connect() as connection:
            horizons, floor = self._horizons(connection, now)
            devices = self._devices(connection)
        settled = 0
        for device_id, (pools, metered, through) in devices.items():
            horizon = min((horizons.get(pool, floor) for pool in pools), default=floor)
            try:
                with self._engine.begin() as connection:
                    if metered:
                        settled += self._settle_metered(connection, device_id, pools, through,
                                                        horizon, now)
                    else:
                        settled += self._settle_estimated(connection, device_id, pools,
                                                          through, horizon, now)
            except SettlementConflict as exc:
                log.info("settlement: %s", exc)
            except Exception:  # one device's trouble must not stop the others
                log.exception("settlement of device %s failed; retried next run", device_id)
        self.stats.runs += 1
        self.stats.settled_rows += settled
        return f"settled {settled} rows on {len(devices)} devices"

    # -- horizon ---------------------------------------------------------------------------

    def _horizons(self, connection: Connection,
                  now: datetime) -> tuple[dict[str, float], float]:
        """Per pool, the latest time every window before which may close; and the floor."""
        config = self.config
        base = (now - timedelta(seconds=config.margin_s)).timestamp()
        hold = (now - timedelta(seconds=config.max_hold_s)).timestamp()
        live_since = now - timedelta(seconds=config.replica_timeout_s)
        per_pool: dict[str, float] = {}
        for row in connection.execute(select(replicas).where(
                replicas.c.heartbeat_at >= live_since)):
            base = min(base, _aware(row.heartbeat_at).timestamp())
            if row.pending_since is not None:
                base = min(base, _aware(row.pending_since).timestamp())
            for pool, started in json.loads(row.in_flight_json or "{}").items():
                started_s = datetime.fromisoformat(started).timestamp()
                per_pool[pool] = min(per_pool.get(pool, started_s), started_s)
        # A disaggregated pool's request in flight holds both member pools' devices: its
        # prefill phase lies on one, its decode phase on the other.
        for pool, started_s in list(per_pool.items()):
            accounts = self._pools.get(pool)
            for member in accounts.members if accounts is not None else ():
                per_pool[member] = min(per_pool.get(member, started_s), started_s)
        horizons = {pool: max(hold, min(base, started_s)) for pool, started_s in per_pool.items()}
        floor = max(hold, base)
        # Devices of unknown pools wait for every pool.
        horizons[""] = min([floor, *horizons.values()])
        return horizons, floor

    def _devices(self, connection: Connection) -> dict[str, tuple[list[str], bool, float | None]]:
        """Every device with unsettled rows or samples: its pools, whether metered, progress."""
        found: dict[str, tuple[list[str], bool, float | None]] = {}
        known = {row.device_id: row for row in connection.execute(select(energy_devices))}
        sampled = {device for (device,) in connection.execute(
            select(energy_samples.c.device_id).distinct())}
        unsettled = connection.execute(
            select(requests_table.c.device_id, requests_table.c.pool).where(
                requests_table.c.settled_at.is_(None), requests_table.c.device_id.is_not(None),
                requests_table.c.served_at.is_not(None)).distinct()).all()
        row_pools: dict[str, set[str]] = {}
        for device_id, pool in [*unsettled, *unsettled_prefill_devices(connection)]:
            row_pools.setdefault(device_id, set()).add(pool or "")
        for device_id in set(row_pools) | sampled:
            info = known.get(device_id)
            pools = set(row_pools.get(device_id, set()))
            if info is not None and info.pools:
                pools.update(info.pools.split(","))
            through = (_aware(info.settled_through).timestamp()
                       if info is not None and info.settled_through is not None else None)
            found[device_id] = (sorted(pools) or [""], device_id in sampled, through)
        return found

    # -- metered devices -------------------------------------------------------------------

    def _settle_metered(self, connection: Connection, device_id: str, pools: list[str],
                        through: float | None, horizon: float, now: datetime) -> int:
        query = select(energy_samples.c.sampled_at, energy_samples.c.energy_j).where(
            energy_samples.c.device_id == device_id,
            energy_samples.c.sampled_at <= _at(horizon))
        if through is not None:
            query = query.where(energy_samples.c.sampled_at >= _at(through))
        samples = [(_aware(at).timestamp(), joules) for at, joules in connection.execute(
            query.order_by(energy_samples.c.sampled_at).limit(MAX_SAMPLES_PER_RUN))]
        if through is None and samples:
            # The device's first samples: rows that ended before them cannot be metered.
            self._ensure_device(connection, device_id, pools, samples[0][0])
            through = samples[0][0]
        if len(samples) < 2:
            last = samples[-1][0] if samples else through
            if last is not None and horizon - last > self.config.stale_meter_s:
                # The meter stopped answering (a pod gone, a meter down): rows after its last
                # sample cannot be metered; they keep their estimate, labelled so.
                self._advance(connection, device_id, through, horizon)
                return self._finish_late(connection, device_id, horizon, now)
            return self._finish_late(connection, device_id, through, now)
        start_s, end_s = samples[0][0], samples[-1][0]
        phases = phases_on(connection, device_id, start_s, end_s)
        flights = [phase.flight() for phase in phases]
        windows: list[Window] = []
        estimated: set[str] = set()
        profile = self._accounts(pools)
        for (left, left_j), (right, right_j) in itertools.pairwise(samples):
            if right <= left:
                continue
            if right_j >= left_j:
                windows.append(Window(left, right, right_j - left_j))
                continue
            # The counter went backwards (driver reload, exporter restart): estimate this one.
            inside = [f for f in flights if f.start_s < right and f.end_s > left]
            estimated.update(f.request_id for f in inside)
            if profile is not None:
                windows.extend(synthesise(inside, left, right, active_w=profile.profile.active_w,
                                          idle_w=profile.profile.idle_w))
        return self._apply(connection, device_id, phases, windows, end_s,
                           "measured" if not estimated else "measured+reset", estimated, now)

    # -- devices without a meter -------------------------------------------------------------

    def _settle_estimated(self, connection: Connection, device_id: str, pools: list[str],
                          through: float | None, horizon: float, now: datetime) -> int:
        accounts = self._accounts(pools)
        if through is None:
            columns = requests_table.c
            firsts = [connection.execute(select(func.min(columns.served_at)).where(
                where)).scalar() for where in (
                and_(columns.device_id == device_id, columns.settled_at.is_(None)),
                and_(columns.prefill_device_id == device_id,
                     columns.prefill_energy_method == PROVISIONAL))]
            known = [_aware(first).timestamp() for first in firsts if first is not None]
            if not known:
                return 0
            through = min(known)
            self._ensure_device(connection, device_id, pools, None)
        if horizon <= through:
            return 0
        if accounts is None:  # its pool is unknown here: keep the rows' own estimates
            self._advance(connection, device_id, through, horizon)
            return self._finish_late(connection, device_id, horizon, now)
        phases = phases_on(connection, device_id, through, horizon)
        profile = accounts.profile
        windows = synthesise([phase.flight() for phase in phases], through, horizon,
                             active_w=profile.active_w, idle_w=profile.idle_w)
        return self._apply(connection, device_id, phases, windows, horizon, "estimated",
                           {phase.key for phase in phases}, now)

    # -- shared steps ------------------------------------------------------------------------

    def _accounts(self, pools: Sequence[str]) -> PoolAccounts | None:
        for pool in pools:
            if pool in self._pools:
                return self._pools[pool]
        return None

    def _apply(self, connection: Connection, device_id: str, phases: list[Phase],
               windows: list[Window], through: float, method: str, estimated: set[str],
               now: datetime) -> int:
        previous = windows[0].start_s if windows else None
        config = self.config
        # The device's pool's token weights (the settings' defaults for an unknown pool).
        pools = {phase.pool for phase in phases if phase.pool in self._pools}
        accounts = self._pools[min(pools)] if pools else None
        result = attribute(
            windows, [phase.flight() for phase in phases],
            prefill_weight=accounts.prefill_weight if accounts else config.prefill_weight,
            decode_weight=accounts.decode_weight if accounts else config.decode_weight)
        metered_j = sum(w.energy_j for w in windows)
        attributed_j = sum(result.energy_j.values())
        updates: dict[bool, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {
            False: ([], []), True: ([], [])}  # per kind of phase: partial, final
        for phase in phases:
            key = phase.key
            joules = phase.settled_j + result.energy_j.get(key, 0.0)
            busy_s = phase.settled_busy_s + result.busy_s.get(key, 0.0)
            shared = phase.settled_shared or key in result.shared
            # A phase that started before the first window it is given, and was given none
            # before, missed windows (held past max_hold_s, or older than the first sample):
            # its figure is not fully metered.
            missed = (previous is not None and not phase.touched
                      and phase.start_s < previous - 1e-6)
            synthesised = phase.settled_estimated or key in estimated or missed
            prefix = "prefill_" if phase.prefill else ""
            values = {"rid": phase.request_id, prefix + "settled_j": joules,
                      prefix + "settled_busy_s": busy_s, prefix + "settled_shared": shared,
                      prefix + "settled_estimated": synthesised}
            partial, final = updates[phase.prefill]
            if phase.end_s > through:
                partial.append(values)
                continue
            label = "estimated" if synthesised else "apportioned" if shared else "measured"
            final.append(values | (self._final_prefill(phase, joules, busy_s, label)
                                   if phase.prefill else
                                   self._final(phase, joules, busy_s, label, now)))
        self._advance(connection, device_id, previous, through)
        for prefill, (partial_set, final_set) in (
                (False, (ROW_PARTIAL, ROW_FINAL)), (True, (PREFILL_PARTIAL, PREFILL_FINAL))):
            partial, final = updates[prefill]
            update_phases(connection, partial, partial_set)
            update_phases(connection, final, final_set)
        if windows:
            connection.execute(insert(energy_windows).values(
                device_id=device_id, start_at=_at(windows[0].start_s),
                end_at=_at(windows[-1].end_s), metered_j=metered_j, attributed_j=attributed_j,
                idle_j=result.idle_j, rows=len(phases), method=method, settled_at=now))
        connection.execute(delete(energy_samples).where(
            energy_samples.c.device_id == device_id,
            energy_samples.c.sampled_at < _at(through) - SAMPLE_RETENTION))
        late = self._finish_late(connection, device_id, through, now)
        self.stats.windows += 1 if windows else 0
        self.stats.metered_j += metered_j
        self.stats.idle_j += result.idle_j
        return len(updates[False][1]) + late

    def _final(self, phase: Phase, joules: float, busy_s: float, label: str,
               now: datetime) -> dict[str, Any]:
        """A row's own device's figures (a disaggregated row's prefill phase is added in SQL)."""
        accounts = self._pools.get(phase.pool or "")
        embodied = busy_s * accounts.embodied_g_per_s if accounts is not None else None
        operational = (operational_g(joules, phase.ci_g_per_kwh, phase.pue or 1.0)
                       if phase.ci_g_per_kwh is not None else None)
        return {"energy_j": joules, "energy_method": label, "operational_g_co2e": operational,
                "embodied_g_co2e": embodied, "settled_at": now}

    def _final_prefill(self, phase: Phase, joules: float, busy_s: float,
                       label: str) -> dict[str, Any]:
        """A prefill phase's figures: its device's joules, its own pool's grid and embodied rate.

        The row's grid intensity is its decode pool's; the prefill pool's (times its PUE) is
        the ratio its provisional estimate was written with, so the metered joules keep it.
        """
        accounts = self._pools.get(phase.pool or "")
        operational = phase.estimate_operational_g
        if operational is not None and phase.estimate_j > 0:
            operational = joules * operational / phase.estimate_j
        elif phase.ci_g_per_kwh is not None and accounts is not None:
            operational = operational_g(joules, phase.ci_g_per_kwh, accounts.pue)
        embodied = (busy_s * accounts.embodied_g_per_s if accounts is not None
                    else phase.estimate_embodied_g)
        return {"prefill_energy_j": joules, "prefill_energy_method": label,
                "prefill_operational_g_co2e": operational, "prefill_embodied_g_co2e": embodied}

    @staticmethod
    def _finish_late(connection: Connection, device_id: str, through: float | None,
                     now: datetime) -> int:
        """Rows that arrived after their windows closed keep their estimate, labelled so."""
        if through is None:
            return 0
        finish_late_prefills(connection, device_id, through)
        columns = requests_table.c
        late = and_(columns.device_id == device_id, columns.settled_at.is_(None),
                    columns.ended_at <= _at(through))
        untouched = connection.execute(update(requests_table).where(
            late, columns.settled_j.is_(None), columns.energy_method == PROVISIONAL).values(
            energy_method="estimated", settled_at=now)).rowcount
        touched = connection.execute(update(requests_table).where(
            late, columns.settled_j.is_not(None)).values(
            energy_j=columns.settled_j + func.coalesce(columns.prefill_energy_j, 0.0),
            energy_method="apportioned", settled_at=now,
            operational_g_co2e=columns.settled_j / 3.6e6 * columns.ci_g_per_kwh
            * func.coalesce(columns.pue, 1.0)
            + func.coalesce(columns.prefill_operational_g_co2e, 0.0))).rowcount
        # Rows with no energy figure at all (their pool unknown to the leader): done with.
        connection.execute(update(requests_table).where(late).values(settled_at=now))
        return int(untouched or 0) + int(touched or 0)

    @staticmethod
    def _advance(connection: Connection, device_id: str, previous: float | None,
                 through: float) -> None:
        """Move the device's settled point from `previous` to `through`, or roll back.

        A compare-and-set: if another process settled this device meanwhile (a leader handing
        over while its last run finishes), this run's transaction is abandoned rather than
        counting the same windows twice.
        """
        conditions = [energy_devices.c.device_id == device_id]
        if previous is not None:
            conditions.append(or_(energy_devices.c.settled_through.is_(None),
                                  energy_devices.c.settled_through <= _at(previous + 1e-3)))
        moved = connection.execute(update(energy_devices).where(*conditions).values(
            settled_through=_at(through))).rowcount
        if not moved:
            raise SettlementConflict(f"device {device_id} was settled elsewhere meanwhile")

    @staticmethod
    def _ensure_device(connection: Connection, device_id: str, pools: list[str],
                       first_sample_s: float | None) -> None:
        exists = connection.execute(select(energy_devices.c.device_id).where(
            energy_devices.c.device_id == device_id)).first()
        through = _at(first_sample_s) if first_sample_s is not None else None
        if exists is None:
            connection.execute(insert(energy_devices).values(
                device_id=device_id, pools=",".join(p for p in pools if p),
                available=first_sample_s is not None,
                reason=None if first_sample_s is not None else "no meter: estimated",
                settled_through=through))
        elif through is not None:
            connection.execute(update(energy_devices).where(
                energy_devices.c.device_id == device_id,
                energy_devices.c.settled_through.is_(None)).values(settled_through=through))
