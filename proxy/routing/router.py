"""Router: orders a request's candidate pools by the configured policy and learns from results.

No I/O: pool facts come from the pools' configuration and live state (admission, breakers),
grid intensity from the CarbonService's cached readings, forecasts from in-memory predictors.
The decision is returned as a `RouteDecision` value that serving puts on the ledger row
(`route_policy`, `predicted_output_tokens`, `predicted_energy_j`), so an operator can check
the forecasts against what happened.
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
from proxy.routing.disaggregation import KVTransfer
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
class RouteAsk:
    """What the router needs to know about one request."""

    endpoint: str
    task_class: str | None
    level: str | None
    prompt_chars: int
    max_tokens: int | None = None
    lam: float | None = None  # the key's own lambda, if its policy sets one


@dataclasses.dataclass(frozen=True, slots=True)
class RouteDecision:
    """The policy that ordered the pools and the forecasts for the first one."""

    policy: str | None = None
    predicted_output_tokens: float | None = None
    predicted_energy_j: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PoolStatic:
    """A pool's fixed routing facts: its device profile, carbon figures and SLO."""

    profile: HardwareProfile
    region: str | None = None
    pue: float = 1.0
    embodied_g_per_s: float = 0.0
    params_b: float | None = None
    slo: SLO = dataclasses.field(default_factory=SLO)
    # A disaggregated pool: its prefill pool's name and the link (its own figures: decode's).
    prefill_pool: str | None = None
    transfer: KVTransfer | None = None


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
        prefill = None
        if static.prefill_pool is not None:
            ahead = self.statics[static.prefill_pool]
            prefill = PoolFacts(name=static.prefill_pool, profile=ahead.profile,
                                ci_g_per_kwh=self.intensity(ahead.region), pue=ahead.pue,
                                embodied_g_per_s=ahead.embodied_g_per_s,
                                params_b=ahead.params_b)
        return PoolFacts(
            name=pool.name, profile=static.profile,
            ci_g_per_kwh=self.intensity(static.region), pue=static.pue,
            embodied_g_per_s=static.embodied_g_per_s, params_b=static.params_b,
            slo=static.slo, observed=self.latency.observed(pool.name, now_s),
            free_slot=admission.in_flight + admission.waiting < admission.limit,
            can_queue=admission.waiting < admission.max_queue,
            usable=pool.usable, load=admission.load, prefill=prefill,
            transfer=static.transfer)

    def order(self, routes: list[Route], ask: RouteAsk) -> tuple[list[Route], RouteDecision]:
        """The candidates best first, and the decision with its forecasts."""
        config = self.config
        if len(routes) == 1:  # nothing to rank; still record the forecast
            return routes, self._single(ask, routes[0])
        if config.policy == "least_loaded" or ask.endpoint == "embeddings":
            ordered = sorted(routes, key=lambda r: (not r.pool.usable, r.pool.admission.load))
            return ordered, RouteDecision("least_loaded")
        lam = config.lam if ask.lam is None else ask.lam
        now_s = self.clock()
        input_tokens = self.inputs.predict(ask.prompt_chars)
        by_name = {route.pool.name: route for route in routes}
        klass, level, max_tokens = ask.task_class, ask.level, ask.max_tokens
        # Each pool is scored at its own output forecast (the EWMA is per pool).
        forecasts = {name: Forecast(
            input_tokens,
            self.predictor.predict(klass, level, name, max_tokens),
            self.predictor.spread(klass, level, name, max_tokens))
            for name in by_name}
        ranked = self._rank([self.facts(route.pool, now_s) for route in routes],
                            forecasts, lam)
        policy = f"{config.policy}:lambda={lam:g}:{config.objective}"
        if config.policy == "threshold":
            policy = (f"threshold:{config.threshold_pool}<=({config.threshold_input_tokens:g},"
                      f"{config.threshold_output_tokens:g})")
        elif config.policy == "joint":
            ranked, policy = self._placed(ranked, ask, policy)
        best = ranked[0]
        decision = RouteDecision(policy, round(forecasts[best.pool].output_tokens, 1),
                                 round(best.energy_j, 3))
        return [by_name[scored.pool] for scored in ranked], decision

    def _placed(self, ranked: list[Scored], ask: RouteAsk,
                fallback: str) -> tuple[list[Scored], str]:
        """Joint policy: the first pool drawn from the LP's placement, the rest in cost order.

        Only when the LP placed this class and level and the drawn pool is in the first tier.
        """
        found = self.placement(ask.task_class, ask.level) if self.placement else None
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

    def _single(self, ask: RouteAsk, route: Route) -> RouteDecision:
        if ask.endpoint == "embeddings":
            return RouteDecision("single")
        output = self.predictor.predict(ask.task_class, ask.level, route.pool.name,
                                        ask.max_tokens)
        static = self.statics[route.pool.name]
        energy_j = static.profile.predict(self.inputs.predict(ask.prompt_chars), output,
                                          static.params_b).energy_j
        return RouteDecision("single", round(output, 1), round(energy_j, 3))

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
