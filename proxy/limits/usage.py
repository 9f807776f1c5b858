"""KeyUsage: this replica's counts and leases per key, the fleet's last totals; admits or refuses.

The request path only reads and bumps dictionaries here. `admit` runs before a request is
routed: a requests- or tokens-per-minute limit admits while this replica's count in the
minute is below its lease; a carbon budget admits while the fleet's spend (last read plus
what this replica added since) is below it. `record` is the ledger writer's observer (tokens
and provisional gCO2e of every finished row); `budget_level` is what the Director asks for
a key near its budget. `take` / `apply` / `restore` are the sync job's side (`sync.py`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from proxy.accounting.record import LedgerRow
from proxy.auth.keys import KeyRing
from proxy.errors import CarbonBudgetExceeded, KeyRateLimited
from proxy.limits.policy import (
    MINUTE,
    BudgetStep,
    KeyLimits,
    Period,
    minute_floor,
    period_bounds,
    reached_step,
    share,
    sliding_minute,
)

KEEP_MINUTES = timedelta(minutes=10)  # this replica's own per-minute totals kept in memory
STALE_AFTER_FLUSHES = 5  # no sync for this many intervals: fall back to static shares


@dataclasses.dataclass(slots=True)
class Counts:
    """Requests, tokens and gCO2e (mutable: summed in place)."""

    requests: int = 0
    tokens: int = 0
    g_co2e: float = 0.0

    def add(self, other: Counts) -> None:
        """Add another count into this one."""
        self.requests += other.requests
        self.tokens += other.tokens
        self.g_co2e += other.g_co2e


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """How many requests and tokens this replica may use in one minute (None: no limit)."""

    requests: int | None
    tokens: int | None


@dataclasses.dataclass(frozen=True, slots=True)
class FleetUsage:
    """One key's fleet-wide totals at the last read (every replica's flushed counts)."""

    read_at: datetime
    minute: datetime  # the minute `current` counts
    previous: Counts  # the minute before it
    current: Counts
    period_start: datetime | None  # of the carbon budget's period, when it has one
    carbon_g_co2e: float  # spent in that period


@dataclasses.dataclass(frozen=True, slots=True)
class Taken:
    """What one flush carries: dirty per-minute totals (absolute), and what it covers."""

    minutes: dict[tuple[str, datetime], Counts]
    since: dict[str, Counts]  # counted since the previous flush (the leases' demand)
    active: frozenset[str]  # keys this replica served in the last minute
    taken_at: datetime  # every count of a minute before this one's is in this flush or an earlier


@dataclasses.dataclass(frozen=True, slots=True)
class KeyUsageView:
    """A key's usage against its limits, as `/admin/keys` and the dashboard show it."""

    requests_last_minute: float
    tokens_last_minute: float
    requests_per_minute: int | None
    tokens_per_minute: int | None
    carbon_g_co2e: float | None
    carbon_budget_g_co2e: float | None
    carbon_budget_period: Period | None
    period_resets_at: datetime | None
    budget_state: str  # none | ok | nearing | spent
    shortened_to: str | None  # the level the budget currently imposes at least
    fleet_read_at: datetime | None


class KeyUsage:
    """Built once; shared by serving (admit), the ledger (record) and the sync job."""

    def __init__(self, keys: KeyRing, default_steps: list[BudgetStep], *, flush_s: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._keys = keys
        self._default_steps = list(default_steps)
        self._stale = timedelta(seconds=flush_s * STALE_AFTER_FLUSHES)
        self._clock = clock
        self._minutes: dict[tuple[str, datetime], Counts] = {}  # this replica, absolute
        self._dirty: set[tuple[str, datetime]] = set()
        self._since: dict[str, Counts] = {}  # counted after the flush in progress began
        self._pending: dict[str, Counts] = {}  # counted in the flush in progress
        self._seen: dict[str, datetime] = {}  # a key's last attempt here
        self._leases: dict[tuple[str, datetime], Lease] = {}
        self._fleet: dict[str, FleetUsage] = {}
        self._synced_at: datetime | None = None
        self._live, self._index = 1, 0

    # -- the request path ------------------------------------------------------------------

    def admit(self, key_id: str | None) -> None:
        """Count one request of a virtual key, or refuse it (429) if a limit is reached."""
        if key_id is None:
            return
        policy = self._keys.policy(key_id)
        if policy is None:  # the master key and unknown ids are not limited
            return
        now = self._clock()
        minute = minute_floor(now)
        self._seen[key_id] = now
        limits = policy.limits
        if limits.limited:
            self._check(key_id, limits, now, minute)
        self._bump(key_id, minute, Counts(requests=1))

    def record(self, row: LedgerRow) -> None:
        """Count a finished row's tokens and provisional gCO2e (ledger writer observer)."""
        key_id = row.api_key_id
        if key_id is None or self._keys.policy(key_id) is None:
            return
        tokens = (row.prompt_tokens or 0) + (row.completion_tokens or 0)
        g_co2e = (row.operational_g_co2e or 0.0) + (row.embodied_g_co2e or 0.0)
        if tokens or g_co2e:
            # Tokens count in the minute they were used; gCO2e by the row's creation, as the
            # ledger's own sums are (sync.py).
            self._bump(key_id, minute_floor(self._clock()), Counts(tokens=tokens))
            self._bump(key_id, minute_floor(row.created_at.astimezone(UTC)),
                       Counts(g_co2e=g_co2e))

    def budget_level(self, key_id: str | None) -> str | None:
        """The shortest-answer level a key's carbon budget currently imposes, if any."""
        if key_id is None:
            return None
        policy = self._keys.policy(key_id)
        if policy is None or policy.limits.carbon_budget_g_co2e is None:
            return None
        fraction = self._carbon_spent(key_id, policy.limits, self._clock()) / (
            policy.limits.carbon_budget_g_co2e)
        return reached_step(self._steps(policy.limits), fraction)

    # -- views ------------------------------------------------------------------------------

    def view(self, key_id: str, limits: KeyLimits) -> KeyUsageView:
        """Usage against limits now, from the last fleet read plus what this replica added."""
        now = self._clock()
        requests, tokens = self._fleet_window(key_id, now)
        local = self._local(key_id)
        budget = limits.carbon_budget_g_co2e
        carbon = self._carbon_spent(key_id, limits, now)
        state, shortened, resets = "none", None, None
        if budget is not None:
            shortened = reached_step(self._steps(limits), carbon / budget)
            state = "spent" if carbon >= budget else "nearing" if shortened else "ok"
            resets = period_bounds(limits.carbon_budget_period, now)[1]
        fleet = self._fleet.get(key_id)
        return KeyUsageView(
            requests_last_minute=round(requests + local.requests, 3),
            tokens_last_minute=round(tokens + local.tokens, 3),
            requests_per_minute=limits.requests_per_minute,
            tokens_per_minute=limits.tokens_per_minute,
            carbon_g_co2e=carbon if budget is not None else None,
            carbon_budget_g_co2e=budget,
            carbon_budget_period=limits.carbon_budget_period if budget is not None else None,
            period_resets_at=resets, budget_state=state, shortened_to=shortened,
            fleet_read_at=fleet.read_at if fleet else None)

    def budget_fractions(self) -> dict[str, float]:
        """Share of its carbon budget each budgeted key has spent (for /metrics)."""
        now = self._clock()
        found = {}
        for key_id, limits in self._keys.limits().items():
            if limits.carbon_budget_g_co2e is not None:
                found[key_id] = (self._carbon_spent(key_id, limits, now)
                                 / limits.carbon_budget_g_co2e)
        return found

    # -- the sync job ---------------------------------------------------------------------

    def rate_limited(self) -> dict[str, KeyLimits]:
        """Keys with a requests or tokens limit (the sync job leases for them)."""
        return {key_id: limits for key_id, limits in self._keys.limits().items()
                if limits.requests_per_minute is not None
                or limits.tokens_per_minute is not None}

    def budgeted(self) -> dict[str, Period]:
        """Keys with a carbon budget and its period (the sync job reads their ledger sums)."""
        return {key_id: limits.carbon_budget_period
                for key_id, limits in self._keys.limits().items()
                if limits.carbon_budget_g_co2e is not None}

    def take(self) -> Taken:
        """Start a flush: the dirty minutes (absolute totals) and the counts they cover."""
        self._pending = self._since
        self._since = {}
        minutes = {slot: dataclasses.replace(self._minutes[slot]) for slot in self._dirty}
        self._dirty = set()
        now = self._clock()
        recent = now - MINUTE
        active = frozenset(key_id for key_id, at in self._seen.items() if at >= recent)
        return Taken(minutes, self._pending, active, now)

    def restore(self, taken: Taken) -> None:
        """The flush failed: its counts stay local and its minutes dirty until the next one."""
        for key_id, counts in taken.since.items():
            self._since.setdefault(key_id, Counts()).add(counts)
        self._pending = {}
        self._dirty |= set(taken.minutes)

    def apply(self, fleet: dict[str, FleetUsage], leases: dict[tuple[str, datetime], Lease],
              *, live: int, index: int) -> None:
        """The flush succeeded: the fleet's totals and this replica's new leases."""
        now = self._clock()
        self._fleet = fleet
        self._leases = leases
        self._pending = {}
        self._synced_at = now
        self._live, self._index = max(live, 1), index
        oldest = minute_floor(now) - KEEP_MINUTES
        for slot in [slot for slot in self._minutes if slot[1] < oldest]:
            self._minutes.pop(slot)
            self._dirty.discard(slot)
        for key_id in [key_id for key_id, at in self._seen.items() if at < oldest]:
            self._seen.pop(key_id)

    def minute_counts(self, key_id: str, minute: datetime) -> Counts:
        """The own totals of this replica for a key's minute (what its lease must cover)."""
        return self._minutes.get((key_id, minute)) or Counts()

    # -- internals --------------------------------------------------------------------------

    def _steps(self, limits: KeyLimits) -> list[BudgetStep]:
        return limits.budget_steps if limits.budget_steps is not None else self._default_steps

    def _bump(self, key_id: str, minute: datetime, counts: Counts) -> None:
        slot = (key_id, minute)
        total = self._minutes.get(slot)
        if total is None:
            total = self._minutes[slot] = Counts()
        total.add(counts)
        self._dirty.add(slot)
        self._since.setdefault(key_id, Counts()).add(counts)

    def _local(self, key_id: str) -> Counts:
        """Counted here and not yet in the fleet's totals."""
        local = Counts()
        for source in (self._pending, self._since):
            found = source.get(key_id)
            if found is not None:
                local.add(found)
        return local

    def _fleet_window(self, key_id: str, now: datetime) -> tuple[float, float]:
        """The fleet's requests and tokens over the last 60 s at the last read."""
        fleet = self._fleet.get(key_id)
        if fleet is None:
            return 0.0, 0.0
        minute = minute_floor(now)
        if minute == fleet.minute:
            previous, current = fleet.previous, fleet.current
        elif minute == fleet.minute + MINUTE:  # the read's current minute is now the previous
            previous, current = fleet.current, Counts()
        else:
            return 0.0, 0.0
        return (sliding_minute(previous.requests, current.requests, now),
                sliding_minute(previous.tokens, current.tokens, now))

    def _carbon_spent(self, key_id: str, limits: KeyLimits, now: datetime) -> float:
        fleet = self._fleet.get(key_id)
        start = period_bounds(limits.carbon_budget_period, now)[0]
        spent = fleet.carbon_g_co2e if fleet and fleet.period_start == start else 0.0
        return spent + self._local(key_id).g_co2e

    def _lease(self, key_id: str, limits: KeyLimits, now: datetime, minute: datetime) -> Lease:
        """The lease for this minute; without a fresh sync, a static share of what was left."""
        lease = self._leases.get((key_id, minute))
        fresh = self._synced_at is not None and now - self._synced_at < self._stale
        if lease is not None and fresh:
            return lease
        # No lease (the key is new here, or the database is unreachable): each replica may use
        # a fixed share of the limit in the minute, and no more than the fleet had left.
        requests, tokens = self._fleet_window(key_id, now)
        local = self._local(key_id)
        own = self.minute_counts(key_id, minute)

        def static(limit: int | None, used: float, mine: int) -> int | None:
            if limit is None:
                return None
            fixed = int(share(limit, self._live, self._index, whole=True))
            return min(fixed, mine + max(0, math.floor(limit - used)))

        return Lease(static(limits.requests_per_minute, requests + local.requests, own.requests),
                     static(limits.tokens_per_minute, tokens + local.tokens, own.tokens))

    def _check(self, key_id: str, limits: KeyLimits, now: datetime, minute: datetime) -> None:
        lease = self._lease(key_id, limits, now, minute)
        own = self.minute_counts(key_id, minute)
        to_minute_end_s = max(1, math.ceil(60 - now.second - now.microsecond / 1e6))
        fleet_requests, fleet_tokens = self._fleet_window(key_id, now)
        local = self._local(key_id)
        for limit, allowed, counted, used, name in (
                (limits.requests_per_minute, lease.requests, own.requests,
                 fleet_requests + local.requests, "requests"),
                (limits.tokens_per_minute, lease.tokens, own.tokens,
                 fleet_tokens + local.tokens, "tokens")):
            if limit is None or allowed is None or counted < allowed:
                continue
            # The fleet at its limit frees up as the window slides; a replica whose lease is
            # spent while the fleet is not gets a new one at its next flush (a second).
            retry_s = to_minute_end_s if used >= limit else 1
            raise KeyRateLimited(
                f"Rate limit reached for key {key_id} on {name} per minute (fleet-wide): "
                f"limit {limit}, used {min(used, limit):.0f}. Please try again in {retry_s}s.",
                kind=name, limit=limit, remaining=max(0, math.floor(limit - used)),
                retry_after_s=retry_s)
        budget = limits.carbon_budget_g_co2e
        if budget is not None:
            spent = self._carbon_spent(key_id, limits, now)
            if spent >= budget:
                resets = period_bounds(limits.carbon_budget_period, now)[1]
                raise CarbonBudgetExceeded(
                    f"Key {key_id} has spent its carbon budget of {budget:g} gCO2e per "
                    f"{limits.carbon_budget_period} (UTC): {spent:.4g} gCO2e used. It resets "
                    f"at {resets.isoformat().replace('+00:00', 'Z')}.",
                    retry_after_s=max(1, math.ceil((resets - now).total_seconds())))
