"""Token and latency forecasts learnt from finished requests (in memory, no I/O).

- `OutputPredictor`: an exponentially weighted mean of completion tokens per task class x
  directive level x pool, falling back to class x level (any pool), then level, then a prior;
  and the spread: quantiles of the last `window` answers per key, which routing averages its
  (convex) costs over.
  Priors are Sprout's mean answer lengths on alpaca (Llama-2-13B; answer characters / 4, from
  ../shared/data/sprout/README.md): L0 272, L1 128, L2 100 tokens. A request's `max_tokens`
  caps the forecast. Seeded at start-up from the ledger's recent rows.
- `InputEstimator`: prompt tokens from prompt characters, with the characters-per-token ratio
  learnt from upstream-reported usage (4 characters per token until the first report).
- `LatencyTracker`: per-pool exponentially weighted time to first token and seconds per output
  token. Observations older than `stale_s` are ignored, so a pool that was slow is tried again
  (and re-measured) instead of being shunned forever.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Iterable

from proxy.routing.cost import Observed

LEVEL_PRIORS_TOKENS = {"L0": 272.0, "L1": 128.0, "L2": 100.0}
ANY = "*"


QUANTILES = 8  # representative output lengths per forecast (midpoints of 8 equal bins)


@dataclasses.dataclass(slots=True)
class _Mean:
    value: float
    count: int
    recent: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=64))
    quantiles: tuple[float, ...] | None = None  # cached; None after a change

    def add(self, tokens: float, alpha: float) -> None:
        self.value += alpha * (tokens - self.value)
        self.count += 1
        self.recent.append(tokens)
        self.quantiles = None

    def spread(self) -> tuple[float, ...]:
        if self.quantiles is None:
            if not self.recent:
                self.quantiles = (self.value,)
            else:
                ordered = sorted(self.recent)
                size = len(ordered)
                picks = min(QUANTILES, size)
                self.quantiles = tuple(ordered[int((i + 0.5) * size / picks)]
                                       for i in range(picks))
        return self.quantiles


class OutputPredictor:
    """Forecast completion tokens for (class, level, pool)."""

    def __init__(self, alpha: float = 0.1, priors: dict[str, float] | None = None) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must lie in (0, 1]")
        self.alpha = alpha
        self.priors = dict(priors or LEVEL_PRIORS_TOKENS)
        self._means: dict[tuple[str, str, str], _Mean] = {}

    @staticmethod
    def _level(level: str | None) -> str:
        # Requests without a directive (off, exempt, none) answer like the baseline level.
        return level if level and level.startswith("L") else "L0"

    def observe(self, task_class: str | None, level: str | None, pool: str,
                completion_tokens: int) -> None:
        """Learn from one finished request."""
        level = self._level(level)
        klass = task_class or ANY
        for key in {(klass, level, pool), (klass, level, ANY), (ANY, level, ANY)}:
            mean = self._means.get(key)
            if mean is None:
                mean = self._means[key] = _Mean(float(completion_tokens), 0)
            mean.add(float(completion_tokens), self.alpha)

    def seed(self, rows: Iterable[tuple[str | None, str | None, str, float, int]]) -> None:
        """Start from the ledger: (class, level, pool, mean completion tokens, count) rows."""
        for task_class, level, pool, mean_tokens, count in rows:
            level = self._level(level)
            klass = task_class or ANY
            self._means[(klass, level, pool)] = _Mean(float(mean_tokens), int(count))
            for key in ((klass, level, ANY), (ANY, level, ANY)):
                known = self._means.get(key)
                if known is None:
                    self._means[key] = _Mean(float(mean_tokens), int(count))
                else:  # pool-weighted combination of the seeds
                    total = known.count + int(count)
                    known.value = (known.value * known.count + mean_tokens * count) / total
                    known.count = total

    def _find(self, task_class: str | None, level: str | None, pool: str) -> _Mean | None:
        level = self._level(level)
        klass = task_class or ANY
        for key in ((klass, level, pool), (klass, level, ANY), (ANY, level, ANY)):
            mean = self._means.get(key)
            if mean is not None:
                return mean
        return None

    def predict(self, task_class: str | None, level: str | None, pool: str,
                max_tokens: int | None = None) -> float:
        """Expected completion tokens, capped by the request's max_tokens."""
        mean = self._find(task_class, level, pool)
        value = mean.value if mean is not None else self.priors.get(
            self._level(level), self.priors["L0"])
        return min(value, float(max_tokens)) if max_tokens is not None else value

    def spread(self, task_class: str | None, level: str | None, pool: str,
               max_tokens: int | None = None) -> tuple[float, ...]:
        """Representative completion lengths (quantiles of recent answers), capped; () if none."""
        mean = self._find(task_class, level, pool)
        if mean is None:
            return ()
        if max_tokens is None:
            return mean.spread()
        cap = float(max_tokens)
        return tuple(min(tokens, cap) for tokens in mean.spread())


class InputEstimator:
    """Prompt tokens from characters, calibrated on upstream usage reports."""

    def __init__(self, alpha: float = 0.05, chars_per_token: float = 4.0) -> None:
        self.alpha = alpha
        self.chars_per_token = chars_per_token

    def observe(self, prompt_chars: int, prompt_tokens: int) -> None:
        """Learn the ratio from a request whose prompt tokens the upstream reported."""
        if prompt_chars > 0 and prompt_tokens > 0:
            ratio = prompt_chars / prompt_tokens
            self.chars_per_token += self.alpha * (ratio - self.chars_per_token)

    def predict(self, prompt_chars: float) -> float:
        """Expected prompt tokens."""
        return prompt_chars / self.chars_per_token


@dataclasses.dataclass(slots=True)
class _Latency:
    ttft_s: float | None = None
    ttft_at_s: float = 0.0
    per_token_s: float | None = None
    per_token_at_s: float = 0.0


class LatencyTracker:
    """Per-pool measured latency; `observed(pool, now)` returns only fresh figures."""

    def __init__(self, alpha: float = 0.2, stale_s: float = 60.0) -> None:
        self.alpha = alpha
        self.stale_s = stale_s
        self._pools: dict[str, _Latency] = {}

    def _blend(self, old: float | None, new: float) -> float:
        return new if old is None else old + self.alpha * (new - old)

    def observe(self, pool: str, *, now_s: float, latency_s: float, ttft_s: float | None,
                completion_tokens: int | None) -> None:
        """Learn from one successful request (streamed ones give the time to first token)."""
        state = self._pools.setdefault(pool, _Latency())
        fresh = now_s - state.ttft_at_s <= self.stale_s
        if ttft_s is not None:
            state.ttft_s = self._blend(state.ttft_s if fresh else None, ttft_s)
            state.ttft_at_s = now_s
        if completion_tokens and completion_tokens > 1:
            decode_s = latency_s - ttft_s if ttft_s is not None else latency_s
            per_token = max(decode_s, 0.0) / (completion_tokens - (1 if ttft_s else 0))
            fresh = now_s - state.per_token_at_s <= self.stale_s
            state.per_token_s = self._blend(state.per_token_s if fresh else None, per_token)
            state.per_token_at_s = now_s

    def observed(self, pool: str, now_s: float) -> Observed | None:
        """Fresh measurements of a pool, or None (routing then uses the profile)."""
        state = self._pools.get(pool)
        if state is None:
            return None
        ttft = state.ttft_s if now_s - state.ttft_at_s <= self.stale_s else None
        per_token = state.per_token_s if now_s - state.per_token_at_s <= self.stale_s else None
        if ttft is None and per_token is None:
            return None
        return Observed(ttft, per_token)
