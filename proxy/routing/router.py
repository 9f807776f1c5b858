"""Router: orders a request's candidate pools by the configured policy and learns from results.

No I/O: pool facts come from the pools' configuration and live state (admission, breakers),
grid intensity from the CarbonService's cached readings, forecasts from in-memory predictors.
The decision is recorded on the ledger row (`route_policy`, `predicted_output_tokens`,
`predicted_energy_j`) so an operator can check the forecasts against what happened.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from typing import Literal

from proxy.accounting.record import LedgerRow
from proxy.energy.estimate import HardwareProfile
from proxy.pools.registry import Pool, Route
from proxy.routing.cost import (
    SLO,
    Forecast,
    Objective,
    PoolFacts,
    Scored,
    rank_by_cost,
    rank_by_threshold,
)
from proxy.routing.predict import InputEstimator, LatencyTracker, OutputPredictor

Policy = Literal["cost", "threshold", "least_loaded", "joint"]
Placement = Callable[[str | None, str | None], tuple[tuple[str, ...], tuple[float, ...]] | None]


@dataclasses.dataclass(frozen=True, slots=True)
class RoutingConfig:
    """The operator's routing choices (from Settings)."""

    policy: Policy = "cost"
    lam: float = 0.5
    objective: Objective = "carbon"
    threshold_pool: str | None = None
    threshold_input_tokens: float = 32.0
    threshold_output_tokens: float = 32.0


@dataclasses.dataclass(frozen=True, slots=True)
class PoolStatic:
    """A pool's fixed routing facts: its device profile, carbon figures and SLO."""

    profile: HardwareProfile
    region: str | None = None
    pue: float = 1.0
    embodied_g_per_s: float = 0.0
    params_b: float | None = None
    slo: SLO = dataclasses.field(default_factory=SLO)


class Router:
    """Best-first candidate order for each request (`order`) and learning (`observe`)."""

    def __init__(self, config: RoutingConfig, statics: dict[str, PoolStatic],
                 intensity: Callable[[str | None], float], *,
                 predictor: OutputPredictor | None = None,
                 inputs: InputEstimator | None = None,
                 latency: LatencyTracker | None = None,
                 placement: Placement | None = None,
                 uniform: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if config.policy == "threshold" and config.threshold_pool not in statics:
            raise ValueError(f"routing threshold pool {config.threshold_pool!r} is not a "
                             f"configured pool (known: {', '.join(sorted(statics))})")
        self.config = config
        self.statics = statics
        self.intensity = intensity
        self.predictor = predictor or OutputPredictor()
        self.inputs = inputs or InputEstimator()
        self.latency = latency or LatencyTracker()
        # `joint`: the optimiser's pool probabilities for (class, level), if it placed them.
        self.placement = placement
        self.uniform = uniform
        self.clock = clock
        self._prompt_chars: dict[str | None, float] = {}

    def class_prompt_chars(self, task_class: str | None) -> float:
        """Mean prompt characters of a class's requests (all requests for None)."""
        return self._prompt_chars.get(task_class, self._prompt_chars.get(None, 400.0))

    def facts(self, pool: Pool, now_s: float) -> PoolFacts:
        """The pool as routing sees it now."""
        static = self.statics[pool.name]
        admission = pool.admission
        return PoolFacts(
            name=pool.name, profile=static.profile,
            ci_g_per_kwh=self.intensity(static.region), pue=static.pue,
            embodied_g_per_s=static.embodied_g_per_s, params_b=static.params_b,
            slo=static.slo, observed=self.latency.observed(pool.name, now_s),
            free_slot=admission.in_flight + admission.waiting < admission.max_concurrency,
            can_queue=admission.waiting < admission.max_queue,
            usable=pool.usable, load=admission.load)

    def order(self, routes: list[Route], row: LedgerRow, *, prompt_chars: int,
              max_tokens: int | None, lam: float | None = None) -> list[Route]:
        """The candidates best first; records the decision on the row."""
        config = self.config
        if len(routes) == 1:  # nothing to rank; still record the forecast
            self._record(row, routes[0], prompt_chars, max_tokens, "single")
            return routes
        if config.policy == "least_loaded" or row.endpoint == "embeddings":
            ordered = sorted(routes, key=lambda r: (not r.pool.usable, r.pool.admission.load))
            row.route_policy = "least_loaded"
            return ordered
        lam = config.lam if lam is None else lam
        now_s = self.clock()
        input_tokens = self.inputs.predict(prompt_chars)
        by_name = {route.pool.name: route for route in routes}
        # Each pool is scored at its own output forecast (the EWMA is per pool).
        forecasts = {name: Forecast(
            input_tokens,
            self.predictor.predict(row.task_class, row.directive_level, name, max_tokens),
            self.predictor.spread(row.task_class, row.directive_level, name, max_tokens))
            for name in by_name}
        ranked = self._rank([self.facts(route.pool, now_s) for route in routes],
                            forecasts, lam)
        policy = f"{config.policy}:lambda={lam:g}:{config.objective}"
        if config.policy == "threshold":
            policy = (f"threshold:{config.threshold_pool}<=({config.threshold_input_tokens:g},"
                      f"{config.threshold_output_tokens:g})")
        elif config.policy == "joint":
            ranked, policy = self._placed(ranked, row, policy)
        best = ranked[0]
        row.route_policy = policy
        row.predicted_output_tokens = round(forecasts[best.pool].output_tokens, 1)
        row.predicted_energy_j = round(best.energy_j, 3)
        return [by_name[scored.pool] for scored in ranked]

    def _placed(self, ranked: list[Scored], row: LedgerRow,
                fallback: str) -> tuple[list[Scored], str]:
        """Joint policy: the first pool drawn from the LP's placement, the rest in cost order.

        Only when the LP placed this class and level and the drawn pool is in the first tier.
        """
        found = self.placement(row.task_class, row.directive_level) if self.placement else None
        if found is None:
            return ranked, f"joint:unplanned:{fallback}"
        names, weights = found
        draw, total = self.uniform(), 0.0
        chosen = names[-1]
        for name, weight in zip(names, weights, strict=True):
            total += weight
            if draw < total:
                chosen = name
                break
        first = [s for s in ranked if s.pool == chosen and s.tier == 0]
        if not first:
            return ranked, f"joint:{chosen}-unavailable:{fallback}"
        return first + [s for s in ranked if s is not first[0]], "joint:lp"

    def _rank(self, facts: list[PoolFacts], forecasts: dict[str, Forecast],
              lam: float) -> list[Scored]:
        config = self.config
        if config.policy == "threshold" and config.threshold_pool is not None:
            return rank_by_threshold(
                facts, forecasts, efficient_pool=config.threshold_pool,
                max_input_tokens=config.threshold_input_tokens,
                max_output_tokens=config.threshold_output_tokens,
                lam=lam, objective=config.objective)
        return rank_by_cost(facts, forecasts, lam=lam, objective=config.objective)

    def _record(self, row: LedgerRow, route: Route, prompt_chars: int,
                max_tokens: int | None, policy: str) -> None:
        row.route_policy = policy
        if row.endpoint != "embeddings":
            output = self.predictor.predict(row.task_class, row.directive_level,
                                            route.pool.name, max_tokens)
            static = self.statics[route.pool.name]
            row.predicted_output_tokens = round(output, 1)
            row.predicted_energy_j = round(static.profile.predict(
                self.inputs.predict(prompt_chars), output, static.params_b).energy_j, 3)

    def observe(self, row: LedgerRow, prompt_chars: int) -> None:
        """Learn from a finished request (successful ones only)."""
        if row.status != "ok" or row.pool is None or row.endpoint == "embeddings":
            return
        if row.prompt_tokens and not row.usage_estimated:
            self.inputs.observe(prompt_chars, row.prompt_tokens)
        for key in (row.task_class, None):
            known = self._prompt_chars.get(key)
            self._prompt_chars[key] = (float(prompt_chars) if known is None
                                       else known + 0.05 * (prompt_chars - known))
        if row.completion_tokens is not None and not row.usage_estimated:
            self.predictor.observe(row.task_class, row.directive_level, row.pool,
                                   row.completion_tokens)
        self.latency.observe(
            row.pool, now_s=self.clock(), latency_s=row.latency_ms / 1000.0,
            ttft_s=row.ttft_ms / 1000.0 if row.ttft_ms is not None else None,
            completion_tokens=row.completion_tokens)
