"""Per-key limits: the pure arithmetic, KeyUsage's admission, and the Director's budget steps."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from proxy.accounting.record import LedgerRow
from proxy.auth.keys import KeyRing
from proxy.directives.catalogue import DEFAULT_LEVELS, Catalogue
from proxy.directives.policy import KeyPolicy
from proxy.directives.store import CatalogueStore
from proxy.errors import CarbonBudgetExceeded, KeyRateLimited
from proxy.limits.policy import (
    DEFAULT_BUDGET_STEPS,
    BudgetStep,
    KeyLimits,
    lease,
    period_bounds,
    reached_step,
    sliding_minute,
)
from proxy.limits.usage import Counts, FleetUsage, KeyUsage, Lease
from proxy.optimiser.allocation import Allocation, AllocationHolder
from proxy.protocol.chat import ChatCompletionRequest
from proxy.serving.directing import Director

T0 = datetime(2026, 12, 1, 12, 0, 10, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _usage(limits: KeyLimits, clock: Clock) -> KeyUsage:
    keys = KeyRing(None, {"digest": "key_a"}, {"key_a": KeyPolicy(limits=limits)})
    return KeyUsage(keys, DEFAULT_BUDGET_STEPS, flush_s=1.0, clock=clock)


def _row(g_co2e: float, at: datetime, tokens: int = 10) -> LedgerRow:
    return LedgerRow(request_id=f"req_{at.timestamp()}", created_at=at, endpoint="chat",
                     api_key_id="key_a", prompt_tokens=tokens // 2,
                     completion_tokens=tokens - tokens // 2, operational_g_co2e=g_co2e * 0.75,
                     embodied_g_co2e=g_co2e * 0.25)


def test_periods_are_utc_calendar_days_and_months() -> None:
    assert period_bounds("day", T0) == (datetime(2026, 12, 1, tzinfo=UTC),
                                        datetime(2026, 12, 2, tzinfo=UTC))
    assert period_bounds("month", T0) == (datetime(2026, 12, 1, tzinfo=UTC),
                                          datetime(2027, 1, 1, tzinfo=UTC))
    june = datetime(2026, 6, 30, 23, 59, tzinfo=UTC)
    assert period_bounds("month", june)[1] == datetime(2026, 7, 1, tzinfo=UTC)


def test_the_previous_minute_counts_for_the_part_still_in_the_window() -> None:
    assert sliding_minute(10, 2, T0.replace(second=0)) == 12
    assert sliding_minute(10, 2, T0.replace(second=45)) == pytest.approx(4.5)


def test_a_lease_never_hands_out_more_than_is_left() -> None:
    # 10 per minute; 6 in the previous minute at 50% elapsed (3), others hold 4, I used 1.
    assert lease(10, previous_used=6, others_current=4, own_used=1, elapsed_fraction=0.5,
                 ask=100) == 3
    assert lease(10, previous_used=0, others_current=10, own_used=0, elapsed_fraction=0.0,
                 ask=5) == 0
    assert lease(10, previous_used=0, others_current=0, own_used=2, elapsed_fraction=0.0,
                 ask=3) == 5


def test_budget_steps_take_the_highest_reached() -> None:
    assert reached_step(DEFAULT_BUDGET_STEPS, 0.5) is None
    assert reached_step(DEFAULT_BUDGET_STEPS, 0.85) == "L1"
    assert reached_step(DEFAULT_BUDGET_STEPS, 1.2) == "L2"


def test_requests_are_admitted_up_to_the_lease_then_refused_as_openai_does() -> None:
    clock = Clock(T0)
    usage = _usage(KeyLimits(requests_per_minute=10), clock)
    minute = T0.replace(second=0)
    usage.take()
    usage.apply({}, {("key_a", minute): Lease(requests=3, tokens=None)}, live=2, index=0)
    for _ in range(3):
        usage.admit("key_a")
    with pytest.raises(KeyRateLimited) as refused:
        usage.admit("key_a")
    assert refused.value.status_code == 429
    assert refused.value.error_type == "requests" and refused.value.code == "rate_limit_exceeded"
    assert refused.value.headers["x-ratelimit-limit-requests"] == "10"
    # The fleet is not full: the lease is, and a new one comes at the next flush.
    assert refused.value.headers["retry-after"] == "1"
    usage.admit(None)  # the master key is never limited
    usage.admit("key_unknown")


def test_without_a_fresh_sync_each_replica_uses_only_its_static_share() -> None:
    clock = Clock(T0)
    usage = _usage(KeyLimits(requests_per_minute=9), clock)
    usage.take()
    usage.apply({}, {}, live=2, index=1)  # synced, but no lease for the key yet
    admitted = 0
    for _ in range(20):
        try:
            usage.admit("key_a")
            admitted += 1
        except KeyRateLimited:
            break
    assert admitted == 4  # 9 // 2, the spare unit is replica 0's
    clock.now += timedelta(seconds=30)  # a lease was granted long ago: the sync is stale
    usage_b = _usage(KeyLimits(requests_per_minute=9), clock)
    usage_b.take()
    usage_b.apply({}, {("key_a", clock.now.replace(second=0)): Lease(9, None)}, live=2,
                  index=0)
    clock.now += timedelta(seconds=10)
    admitted = 0
    for _ in range(20):
        try:
            usage_b.admit("key_a")
            admitted += 1
        except KeyRateLimited:
            break
    assert admitted == 5


def test_a_carbon_budget_shortens_answers_then_refuses_until_the_period_turns() -> None:
    clock = Clock(T0)
    usage = _usage(KeyLimits(carbon_budget_g_co2e=1.0), clock)
    minute = T0.replace(second=0)
    usage.take()
    usage.apply({"key_a": FleetUsage(T0, minute, Counts(), Counts(), period_start=minute.replace(
        hour=0, minute=0), carbon_g_co2e=0.5)}, {}, live=1, index=0)
    assert usage.budget_level("key_a") is None
    usage.record(_row(0.35, T0))  # 0.85 spent
    assert usage.budget_level("key_a") == "L1"
    usage.admit("key_a")
    usage.record(_row(0.2, T0))  # 1.05 spent
    assert usage.budget_level("key_a") == "L2"
    with pytest.raises(CarbonBudgetExceeded) as refused:
        usage.admit("key_a")
    assert refused.value.error_type == "insufficient_quota"
    assert refused.value.code == "carbon_budget_exceeded"
    assert "1 gCO2e per day" in refused.value.message
    assert "2026-12-02T00:00:00Z" in refused.value.message
    view = usage.view("key_a", KeyLimits(carbon_budget_g_co2e=1.0))
    assert view.budget_state == "spent" and view.carbon_g_co2e == pytest.approx(1.05)
    # The next day the fleet's last read no longer counts, and neither do yesterday's rows
    # once flushed.
    clock.now = T0 + timedelta(days=1)
    usage.take()
    usage.apply({}, {}, live=1, index=0)
    usage.admit("key_a")


def test_a_budget_near_its_end_moves_requests_to_the_budget_step_level() -> None:
    clock = Clock(T0)
    limits = KeyLimits(carbon_budget_g_co2e=1.0,
                       budget_steps=[BudgetStep(at_fraction=0.5, level="L2")])
    keys = KeyRing(None, {"digest": "key_a"},
                   {"key_a": KeyPolicy(limits=limits), "key_b": KeyPolicy()})
    usage = KeyUsage(keys, DEFAULT_BUDGET_STEPS, flush_s=1.0, clock=clock)
    catalogue = Catalogue(list(DEFAULT_LEVELS))
    holder = AllocationHolder(Allocation.always(catalogue.ids, "L0", "cold start: test"))
    director = Director(CatalogueStore(catalogue), holder, keys, "auto", random.Random(1), usage)
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "What is a grid?"}]})
    assert director.apply(request, "key_a", None)[1].level == "L0"
    usage.record(_row(0.6, T0))
    sent, decision = director.apply(request, "key_a", None)
    assert decision.level == "L2"
    assert "Always answer very briefly" in sent.model_dump_json()  # the directive was injected
    assert director.apply(request, "key_a", "L0")[1].level == "L2"  # over the client's pin
    assert director.apply(request, "key_a", "off")[1].level == "off"  # off stays off
    assert director.apply(request, "key_b", None)[1].level == "L0"  # other keys untouched
