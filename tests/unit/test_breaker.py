"""The circuit breaker's states, with a scripted clock."""

from __future__ import annotations

from proxy.pools.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_consecutive_failures_and_probes_after_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == "closed" and breaker.allow()
    breaker.record_success()  # a success resets the count
    for _ in range(3):
        breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now = 10.0
    assert breaker.state == "half_open"
    assert breaker.allow() and not breaker.allow()  # exactly one trial
    breaker.record_failure()  # the trial failed: open for another cooldown
    assert breaker.state == "open"
    clock.now = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.failures == 0


def test_health_probes_open_and_close_only_what_they_opened() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=10, clock=clock)
    breaker.record_probe(False)
    breaker.record_probe(False)
    assert breaker.state == "open"  # a dead backend, found off the request path
    breaker.record_probe(True)
    assert breaker.state == "closed"  # it answers again
    breaker.record_failure()
    breaker.record_failure()  # requests failed: it lists models but cannot generate
    breaker.record_probe(True)
    assert breaker.state == "open"  # only a trial request may close it
    clock.now = 10.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed"
