"""When the offline evaluator runs: Sprout's opportunistic rule, as a pure function.

Sprout (Li et al., EMNLP 2024, section 4.3) re-evaluates quality when the grid is clean. With
`last` the hour of the previous run and v(h) = CI_h * exp(rate * (h - last)) the
staleness-weighted intensity, at hour t:

- run if t - last >= max_idle_h (72 h);
- otherwise stay idle if t - last <= grace_h (6 h), or if CI_t is above the reference mean;
- otherwise run at a local minimum of v: v(t-1) - v(t-2) <= 0 and v(t) - v(t-1) >= 0.

The rate 0.029/h (~ ln 2 / 24 h) halves the weight of an old assessment every day. Sprout's
simulator takes the reference mean over the whole 720-hour window, which looks ahead; the
production scheduler and the replay benchmark pass the trailing mean instead (causal).
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleRule:
    """The rule's constants (all settings in production)."""

    max_idle_h: float = 72.0
    grace_h: float = 6.0
    staleness_rate_per_h: float = 0.029


def should_evaluate(
    hours_since_last: float,
    ci_last_three: tuple[float, float, float],
    reference_ci: float,
    rule: ScheduleRule = ScheduleRule(),
) -> bool:
    """Whether to run now; `ci_last_three` is (CI_{t-2}, CI_{t-1}, CI_t)."""
    if hours_since_last >= rule.max_idle_h:
        return True
    ci_before_previous, ci_previous, ci_now = ci_last_three
    if hours_since_last <= rule.grace_h or ci_now > reference_ci:
        return False

    def weighted(ci: float, age_h: float) -> float:
        return ci * math.exp(rule.staleness_rate_per_h * age_h)

    v_now = weighted(ci_now, hours_since_last)
    v_previous = weighted(ci_previous, hours_since_last - 1)
    v_before = weighted(ci_before_previous, hours_since_last - 2)
    return v_previous - v_before <= 0 and v_now - v_previous >= 0
