"""RetryPolicy: how many attempts before the first byte, and the jittered wait between them."""

from __future__ import annotations

import dataclasses
import random


@dataclasses.dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Full-jitter exponential backoff (AWS architecture blog's "full jitter")."""

    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float

    def backoff_s(self, attempt: int, rng: random.Random) -> float:
        """Wait before attempt number `attempt` (1 = the first retry)."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1)))
        return rng.uniform(0, ceiling)
