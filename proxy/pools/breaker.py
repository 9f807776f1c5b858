"""CircuitBreaker: stop sending to a backend that keeps failing, then probe it again.

Closed: requests flow. After `failure_threshold` consecutive failures it opens for `cooldown_s`:
no requests. Then one trial request is let through (half-open): success closes it, failure
opens it again for another cooldown. Pure apart from the injected clock.

Health probes (proxy/pools/health.py) report too: a failed probe counts like a failed request,
so a dead backend is opened before any client meets it, and a passing probe closes a breaker
that only probes opened (one opened by failing requests waits for its trial request: a server
can list its models and still fail to generate).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """One per backend; `allow` before an attempt, then `record_success` or `record_failure`."""

    def __init__(self, failure_threshold: int = 5, cooldown_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.failures = 0
        self._opened_at: float | None = None
        self._trial_out = False
        self._probe_only = True  # every counted failure so far came from health probes

    @property
    def state(self) -> State:
        """closed, open, or half_open (cooldown over, trial allowed or in flight)."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at < self.cooldown_s:
            return "open"
        return "half_open"

    def allow(self) -> bool:
        """Whether an attempt may go to this backend now (takes the half-open trial slot)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def record_success(self) -> None:
        """The backend answered: close."""
        self.failures = 0
        self._opened_at = None
        self._trial_out = False
        self._probe_only = True

    def record_probe(self, ok: bool) -> None:
        """A health probe's result (off the request path)."""
        if not ok:
            self.record_failure(probe=True)
        elif self.failures and self._probe_only:
            self.record_success()

    def record_failure(self, *, probe: bool = False) -> None:
        """The backend failed before the first byte: count, maybe open (again)."""
        if not probe:
            self._probe_only = False
        self.failures += 1
        if self._opened_at is not None or self.failures >= self.failure_threshold:
            self._opened_at = self._clock()
            self._trial_out = False
