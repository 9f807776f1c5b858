"""KeyUsageSync: flush this replica's per-key counts, read the fleet's back, lease (every ~1 s).

One transaction per run, off the request path, one replica at a time (a PostgreSQL advisory
transaction lock; SQLite serialises writers itself): upsert this replica's absolute
per-minute totals into `key_usage` (idempotent, so a run that failed half-way is simply
repeated), give back its unused leases of the minutes this flush has closed (each of their
counts is in), read the fleet's rows for the last two minutes, and write this replica's leases:
for each key with a requests or tokens limit, what it may use in this minute (and, near the
minute's end, in the next), out of what the others have not used or leased. A key this
replica served in the last minute asks for twice what it used since the last run or its
fair share of what is left, whichever is more; an idle one holds a lease of one.

Carbon budgets need the whole period (a day or a month): its settled part comes from the
ledger itself (`requests`, whose gCO2e settlement replaces with metered figures), summed up
to a cut-off a couple of minutes back and re-read every `base_refresh_s`; the minutes after
the cut-off come from `key_usage` (provisional gCO2e at each request's end).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, delete, func, or_, select, text, update
from sqlalchemy.dialects import postgresql, sqlite

from proxy.accounting.tables import key_usage, requests
from proxy.limits.policy import MINUTE, KeyLimits, Period, lease, minute_floor, period_bounds
from proxy.limits.usage import Counts, FleetUsage, KeyUsage, Lease, Taken

log = logging.getLogger(__name__)

FORGET_AFTER = timedelta(hours=1)  # key_usage rows older than this are deleted
# Rows created this long before a base read are taken from the ledger; younger ones from
# key_usage (most rows have been written by then; a longer request is counted at the next read).
BASE_LAG = timedelta(minutes=2)
LOCK_ID = 0x5350524F  # "SPRO": pg_advisory_xact_lock key of the lease step
_Leases = dict[tuple[str, datetime], Lease]
_USAGE = ("requests", "tokens", "g_co2e")
_GRANTS = ("granted_requests", "granted_tokens")


class Replica(Protocol):
    """Who this replica is among the live ones (the heartbeat)."""

    @property
    def replica_id(self) -> str:
        """The id of its row in `replicas`."""

    @property
    def live(self) -> int:
        """Live replicas at the last beat."""

    @property
    def index(self) -> int:
        """Its place among them (sorted by id)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Base:
    """The ledger's gCO2e per key for [period start, cutoff)."""

    cutoff: datetime
    read_at: datetime
    g_co2e: dict[tuple[str, datetime], float]  # (key, period start) -> grams


@dataclasses.dataclass(slots=True)
class _Minute:
    """One key's minute across the fleet: sums over replicas, and this replica's part."""

    used: Counts = dataclasses.field(default_factory=Counts)
    others_held_requests: int = 0  # other replicas: max(granted, used)
    others_held_tokens: int = 0
    all_held_requests: int = 0
    all_held_tokens: int = 0


class KeyUsageSync:
    """Scheduled on every replica every `key_usage_flush_s`."""

    def __init__(self, engine: Engine, usage: KeyUsage, heartbeat: Replica, *,
                 interval_s: float, base_refresh_s: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._usage = usage
        self._heartbeat = heartbeat
        self._interval = timedelta(seconds=interval_s)
        self._base_refresh = timedelta(seconds=base_refresh_s)
        self._clock = clock
        self._base: _Base | None = None

    async def run_once(self) -> str:
        """Flush, read back, lease, hand it all to KeyUsage."""
        taken = self._usage.take()
        try:
            fleet, leases = await asyncio.to_thread(self._sync, taken)
        except Exception:
            self._usage.restore(taken)  # counted again at the next run
            raise
        self._usage.apply(fleet, leases, live=self._heartbeat.live, index=self._heartbeat.index)
        return f"{len(taken.minutes)} minutes flushed, {len(leases)} leases"

    def _sync(self, taken: Taken) -> tuple[dict[str, FleetUsage], _Leases]:
        replica = self._heartbeat.replica_id
        limited = self._usage.rate_limited()
        budgeted = self._usage.budgeted()
        with self._engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
            now = self._clock()  # after the lock: the lease is for the moment it is taken
            if taken.minutes:
                _upsert(connection, [
                    {"key_id": key_id, "minute_at": minute, "replica_id": replica,
                     "requests": counts.requests, "tokens": counts.tokens,
                     "g_co2e": counts.g_co2e, "granted_requests": 0, "granted_tokens": 0}
                    for (key_id, minute), counts in taken.minutes.items()], _USAGE)
            # A closed minute's unused lease would weigh on the sliding window for another
            # minute; once this replica's counts of it are all in, only its use counts.
            connection.execute(update(key_usage).where(
                key_usage.c.replica_id == replica,
                key_usage.c.minute_at < minute_floor(taken.taken_at),
                or_(key_usage.c.granted_requests > 0, key_usage.c.granted_tokens > 0))
                .values(granted_requests=0, granted_tokens=0))
            connection.execute(delete(key_usage).where(key_usage.c.minute_at < now - FORGET_AFTER))
            base = self._base_sums(connection, budgeted, now)
            minute = minute_floor(now)
            since = min(minute - MINUTE, base.cutoff) if budgeted else minute - MINUTE
            rows = connection.execute(select(
                key_usage.c.key_id, key_usage.c.minute_at, key_usage.c.replica_id,
                key_usage.c.requests, key_usage.c.tokens, key_usage.c.g_co2e,
                key_usage.c.granted_requests, key_usage.c.granted_tokens).where(
                key_usage.c.minute_at >= since)).all()
            minutes = _minutes(rows, replica)
            leases = self._leases(limited, minutes, taken, now)
            if leases:
                _upsert(connection, [
                    {"key_id": key_id, "minute_at": at, "replica_id": replica,
                     "requests": 0, "tokens": 0, "g_co2e": 0.0,
                     "granted_requests": granted.requests or 0,
                     "granted_tokens": granted.tokens or 0}
                    for (key_id, at), granted in leases.items()], _GRANTS)
        return _fleet(minutes, rows, budgeted, base, now), leases

    def _leases(self, limited: dict[str, KeyLimits], minutes: dict[tuple[str, datetime], _Minute],
                taken: Taken, now: datetime) -> _Leases:
        """The leases of this replica for the current minute, and the next one near its end."""
        minute = minute_floor(now)
        elapsed = (now - minute).total_seconds() / 60.0
        live = max(self._heartbeat.live, 1)
        near_end = minute + MINUTE - now < 3 * self._interval
        found: dict[tuple[str, datetime], Lease] = {}
        for key_id, limits in limited.items():
            previous = minutes.get((key_id, minute - MINUTE), _Minute())
            current = minutes.get((key_id, minute), _Minute())
            own = self._usage.minute_counts(key_id, minute)
            demand = taken.since.get(key_id, Counts())
            grant = functools.partial(_grant, live=live, active=key_id in taken.active)

            # The previous minute counts what every replica used or still held leased there:
            # a replica's last second in it may not have been flushed yet.
            now_lease = Lease(
                grant(limits.requests_per_minute, previous.all_held_requests,
                      current.others_held_requests, own.requests, elapsed, demand.requests),
                grant(limits.tokens_per_minute, previous.all_held_tokens,
                      current.others_held_tokens, own.tokens, elapsed, demand.tokens))
            found[(key_id, minute)] = now_lease
            if near_end:  # the next minute starts with a lease: no refusal at the boundary
                upcoming = minutes.get((key_id, minute + MINUTE), _Minute())
                held_requests = (current.others_held_requests + (now_lease.requests or 0))
                held_tokens = current.others_held_tokens + max(now_lease.tokens or 0, own.tokens)
                found[(key_id, minute + MINUTE)] = Lease(
                    grant(limits.requests_per_minute, held_requests,
                          upcoming.others_held_requests, 0, 0.0, demand.requests),
                    grant(limits.tokens_per_minute, held_tokens, upcoming.others_held_tokens,
                          0, 0.0, demand.tokens))
        return found

    def _base_sums(self, connection: Connection, budgeted: dict[str, Period],
                   now: datetime) -> _Base:
        """The ledger's part of each budget, re-read when stale or when a period turned."""
        base = self._base
        starts = {(key_id, period_bounds(period, now)[0]) for key_id, period in budgeted.items()}
        if (base is not None and now - base.read_at < self._base_refresh
                and starts <= set(base.g_co2e)):
            return base
        cutoff = minute_floor(now) - BASE_LAG
        sums: dict[tuple[str, datetime], float] = {}
        grams = func.coalesce(requests.c.operational_g_co2e, 0.0) + func.coalesce(
            requests.c.embodied_g_co2e, 0.0)
        for start in {start for _, start in starts}:
            keys = [key_id for key_id, key_start in starts if key_start == start]
            found = dict(connection.execute(
                select(requests.c.api_key_id, func.sum(grams))
                .where(requests.c.api_key_id.in_(keys), requests.c.created_at >= start,
                       requests.c.created_at < max(cutoff, start))
                .group_by(requests.c.api_key_id)).all())
            for key_id in keys:
                sums[(key_id, start)] = float(found.get(key_id) or 0.0)
        self._base = _Base(cutoff, now, sums)
        return self._base


def _grant(limit: int | None, prev_used: float, others: float, mine: int, fraction: float,
           wanted: int, *, live: int, active: bool) -> int | None:
    """One lease: an active key asks for twice its recent use or its fair share of what is left."""
    if limit is None:
        return None
    left = limit - prev_used * (1.0 - fraction) - others - mine
    ask = max(2 * wanted, math.ceil(left / live), 1) if active else 1
    return lease(limit, previous_used=prev_used, others_current=others, own_used=mine,
                 elapsed_fraction=fraction, ask=ask)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _minutes(rows: Sequence[Any], replica: str) -> dict[tuple[str, datetime], _Minute]:
    """The fleet's rows summed per (key, minute), with what the other replicas hold."""
    found: dict[tuple[str, datetime], _Minute] = {}
    for row in rows:
        slot = (row.key_id, _aware(row.minute_at))
        entry = found.setdefault(slot, _Minute())
        entry.used.add(Counts(row.requests, row.tokens, row.g_co2e))
        held_requests = max(row.granted_requests, row.requests)
        held_tokens = max(row.granted_tokens, row.tokens)
        entry.all_held_requests += held_requests
        entry.all_held_tokens += held_tokens
        if row.replica_id != replica:
            entry.others_held_requests += held_requests
            entry.others_held_tokens += held_tokens
    return found


def _fleet(minutes: dict[tuple[str, datetime], _Minute], rows: Sequence[Any],
           budgeted: dict[str, Period], base: _Base, now: datetime) -> dict[str, FleetUsage]:
    minute = minute_floor(now)
    starts = {key_id: period_bounds(period, now)[0] for key_id, period in budgeted.items()}
    carbon: dict[str, float] = {}
    for (key_id, minute_at), entry in minutes.items():
        start = starts.get(key_id)
        if start is not None and minute_at >= max(base.cutoff, start):
            carbon[key_id] = carbon.get(key_id, 0.0) + entry.used.g_co2e
    fleet = {}
    for key_id in {key for key, _ in minutes} | set(starts):
        start = starts.get(key_id)
        spent = 0.0
        if start is not None:
            spent = base.g_co2e.get((key_id, start), 0.0) + carbon.get(key_id, 0.0)
        previous = minutes.get((key_id, minute - MINUTE))
        current = minutes.get((key_id, minute))
        fleet[key_id] = FleetUsage(
            read_at=now, minute=minute, previous=previous.used if previous else Counts(),
            current=current.used if current else Counts(), period_start=start,
            carbon_g_co2e=spent)
    return fleet


def _upsert(connection: Connection, values: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    """Insert or overwrite these columns of this replica's minutes (absolute values)."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(key_usage).values(values)
    connection.execute(statement.on_conflict_do_update(
        index_elements=["key_id", "minute_at", "replica_id"],
        set_={name: statement.excluded[name] for name in columns}))
