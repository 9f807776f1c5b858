"""CapturePolicy: which requests' prompts are kept for the evaluator (opt-in, sampled)."""

from __future__ import annotations

import random

from proxy.auth.keys import MASTER_KEY_ID, KeyRing


class CapturePolicy:
    """Capture only for keys that opted in, and only a `rate` share of their requests."""

    def __init__(self, keys: KeyRing, *, master_key_captures: bool, rate: float,
                 rng: random.Random) -> None:
        self._keys = keys
        self._master = master_key_captures
        self._rate = rate
        self._rng = rng

    def wants(self, key_id: str | None) -> bool:
        """Whether to capture this request's prompt."""
        if key_id is None or self._rate <= 0:
            return False
        if key_id == MASTER_KEY_ID:
            allowed = self._master
        else:
            policy = self._keys.policy(key_id)
            allowed = policy is not None and policy.capture_prompts
        return allowed and self._rng.random() < self._rate
