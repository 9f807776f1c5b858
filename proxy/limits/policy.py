"""Key limits: requests and tokens per minute and a carbon budget, and their arithmetic (pure).

Limits are fleet-wide: every replica counts locally and, about once a second, flushes its
counts to `key_usage`, reads the fleet's back and takes a *lease*: how many requests (and
tokens) it may admit in this minute, out of what the other replicas have not used or leased
(`proxy/limits/sync.py`). Leases are taken one replica at a time (a lock), so together they
never exceed the limit, and the request path only compares local counts with its lease.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field

Period = Literal["day", "month"]
MINUTE = timedelta(minutes=1)


class BudgetStep(BaseModel):
    """From `at_fraction` of the carbon budget spent, requests get at least directive `level`."""

    at_fraction: float = Field(gt=0, le=1, strict=True)  # strict: `true` is not 1.0
    level: str = Field(min_length=1, max_length=16)


# As a key nears its budget its answers are shortened (Sprout's levels, catalogue order):
# from 80% spent at least "briefly", from 90% "very briefly". Operators change this with
# PROXY_KEY_BUDGET_STEPS or per key (`limits.budget_steps`).
DEFAULT_BUDGET_STEPS = [BudgetStep(at_fraction=0.8, level="L1"),
                        BudgetStep(at_fraction=0.9, level="L2")]


class KeyLimits(BaseModel):
    """A key's limits (part of its policy); None means unlimited."""

    requests_per_minute: int | None = Field(default=None, ge=1)
    tokens_per_minute: int | None = Field(default=None, ge=1)
    carbon_budget_g_co2e: float | None = Field(default=None, gt=0, strict=True)
    carbon_budget_period: Period = "day"  # calendar day or month, UTC
    # None: the operator's default (PROXY_KEY_BUDGET_STEPS); [] never shortens answers.
    budget_steps: list[BudgetStep] | None = None

    @property
    def limited(self) -> bool:
        """Whether any limit is set."""
        return (self.requests_per_minute is not None or self.tokens_per_minute is not None
                or self.carbon_budget_g_co2e is not None)


def minute_floor(moment: datetime) -> datetime:
    """The start of the minute that holds `moment`."""
    return moment.replace(second=0, microsecond=0)


def period_bounds(period: Period, now: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar day or month holding `now`: [start, end)."""
    now = now.astimezone(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day, day + timedelta(days=1)
    start = day.replace(day=1)
    end = (start.replace(year=start.year + 1, month=1) if start.month == 12
           else start.replace(month=start.month + 1))
    return start, end


def sliding_minute(previous: float, current: float, now: datetime) -> float:
    """Usage over the last 60 s, estimated from two fixed minutes (the sliding-window counter).

    The previous minute counts for the share of it still inside the window, so there is no
    burst of twice the limit across a minute boundary.
    """
    elapsed = (now - minute_floor(now)).total_seconds() / 60.0
    return previous * (1.0 - elapsed) + current


def share(remaining: float, live: int, index: int, *, whole: bool) -> float:
    """The part of what the fleet has left that one replica may spend until the next read.

    Whole units (requests, tokens): K // N, plus one for the first K mod N replicas, so the
    parts sum to K. Grams: K / N.
    """
    if remaining <= 0:
        return 0.0
    live = max(live, 1)
    if not whole:
        return remaining / live
    units = math.floor(remaining)
    return float(units // live + (1 if index < units % live else 0))


def lease(limit: int, *, previous_used: float, others_current: float, own_used: int,
          elapsed_fraction: float, ask: int) -> int:
    """The total a replica may use in a minute: what it used plus up to `ask` more.

    The minute's budget is the limit less the sliding window's share of the previous minute
    and what the other replicas used or hold leased in this one. The previous minute's share
    only shrinks as the minute goes on, so a lease stays valid until the minute ends.
    """
    available = limit - previous_used * (1.0 - elapsed_fraction) - others_current - own_used
    return own_used + max(0, min(ask, math.floor(available + 1e-9)))


def reached_step(steps: list[BudgetStep], fraction: float) -> str | None:
    """The level of the highest step the spent fraction has reached, if any."""
    reached = [step for step in steps if fraction >= step.at_fraction]
    return max(reached, key=lambda step: step.at_fraction).level if reached else None
