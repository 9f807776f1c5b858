"""Cost-based placement (pure): rank pools for one request by U = lambda * E + (1 - lambda) * R.

Wilkins et al. 2024 ("Hybrid Heterogeneous Clusters Can Lower the Energy Consumption of LLM
Inference Workloads") score a query on a system by U = lambda * E + (1 - lambda) * R, energy and
runtime predicted from its token counts. Joules and seconds have different units, so each is
divided by its largest value among the candidates: lambda = 1 is pure energy (or carbon), lambda
= 0 pure speed, whatever the magnitudes. With `objective="carbon"` E is the request's gCO2e on
that pool: operational (J -> kWh x the pool's own grid intensity x PUE) plus embodied (grams per
second of device use x predicted runtime).

Pools are ranked in tiers, each tier by U: first those that are usable (a breaker not open),
have a free slot and are predicted to meet their SLO; then usable ones with a free slot that
miss the SLO; then those that can only queue; then full ones; unusable last. Failover walks
down this list, so a full or failing pool is still tried after the others rather than dropped.

The Wilkins threshold rule is a policy too: a request predicted at <= T_in input and <= T_out
output tokens goes to the named efficient pool (their M1 Pro) when it is in the first tier;
otherwise, and for longer requests, the other pools by cost.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Literal

from proxy.energy.curves import CallCost
from proxy.energy.estimate import HardwareProfile
from proxy.routing.disaggregation import KVTransfer, Phase, expected_split

Objective = Literal["energy", "carbon"]


@dataclasses.dataclass(frozen=True, slots=True)
class SLO:
    """Latency targets a pool must be predicted to meet (None: no target)."""

    ttft_ms: float | None = None
    per_token_ms: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class Observed:
    """A pool's recently measured latency (fresh observations only; see LatencyTracker)."""

    ttft_s: float | None
    per_token_s: float | None


@dataclasses.dataclass(frozen=True, slots=True)
class PoolFacts:
    """What routing knows about one pool at the moment of a request."""

    name: str
    profile: HardwareProfile
    ci_g_per_kwh: float
    pue: float = 1.0
    embodied_g_per_s: float = 0.0
    params_b: float | None = None
    slo: SLO = SLO()
    observed: Observed | None = None
    free_slot: bool = True
    can_queue: bool = True
    usable: bool = True
    load: float = 0.0
    # A disaggregated pool: its prefill pool's device (this pool's own figures are its decode
    # pool's) and the link the KV cache crosses (proxy/routing/disaggregation.py).
    prefill: PoolFacts | None = None
    transfer: KVTransfer | None = None

    def phase(self) -> Phase:
        """The pool's device as one phase of a split request."""
        return Phase(self.profile, self.ci_g_per_kwh, self.pue, self.embodied_g_per_s,
                     self.params_b)


@dataclasses.dataclass(frozen=True, slots=True)
class Forecast:
    """Predicted token counts of one request.

    `output_samples` are representative output lengths (quantiles of recent answers); costs
    are convex in the output length, so the expected cost is averaged over them rather than
    taken at the mean (which sends too much to a device that is cheap only for short answers).
    Empty: the mean alone.
    """

    input_tokens: float
    output_tokens: float
    output_samples: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class Scored:
    """One pool's prediction for the request, its tier and its cost U (lower is better)."""

    pool: str
    energy_j: float
    carbon_g: float
    runtime_s: float
    ttft_s: float
    per_token_s: float
    meets_slo: bool
    tier: int
    cost: float = 0.0


def _expected(facts: PoolFacts, forecast: Forecast) -> CallCost:
    if not forecast.output_samples:
        return facts.profile.predict(forecast.input_tokens, forecast.output_tokens,
                                     facts.params_b)
    # Cached: forecasts repeat (quantiles move slowly, prompt lengths recur), and this is on
    # the request path for every pool.
    return _expected_cached(facts.profile, facts.params_b, round(forecast.input_tokens),
                            forecast.output_samples)


@functools.lru_cache(maxsize=8192)
def _expected_cached(profile: HardwareProfile, params_b: float | None, input_tokens: int,
                     outputs: tuple[float, ...]) -> CallCost:
    costs = [profile.predict(input_tokens, out, params_b) for out in outputs]
    count = len(costs)
    return CallCost(sum(c.energy_j for c in costs) / count,
                    sum(c.runtime_s for c in costs) / count,
                    sum(c.ttft_s for c in costs) / count)


def predict(facts: PoolFacts, forecast: Forecast) -> CallCost:
    """Expected energy from the profile; latency from fresh observations where there are some."""
    cost = _expected(facts, forecast)
    observed = facts.observed
    if observed is None:
        return cost
    ttft_s = observed.ttft_s if observed.ttft_s is not None else cost.ttft_s
    per_token_s = (observed.per_token_s if observed.per_token_s is not None
                   else cost.decode_s / max(forecast.output_tokens - 1.0, 1.0))
    runtime_s = ttft_s + per_token_s * max(forecast.output_tokens - 1.0, 0.0)
    return CallCost(cost.energy_j, runtime_s, ttft_s)


def score(facts: PoolFacts, forecast: Forecast) -> Scored:
    """Predicted energy, carbon and latency of the request on one pool, and its tier."""
    carbon_g: float | None = None
    if facts.prefill is not None and facts.transfer is not None:
        cost, carbon_g = expected_split(facts.prefill.phase(), facts.phase(), facts.transfer,
                                        forecast.input_tokens,
                                        forecast.output_samples or (forecast.output_tokens,))
    else:
        cost = predict(facts, forecast)
    per_token_s = cost.decode_s / max(forecast.output_tokens - 1.0, 1.0)
    slo = facts.slo
    meets = ((slo.ttft_ms is None or cost.ttft_s * 1000.0 <= slo.ttft_ms)
             and (slo.per_token_ms is None or per_token_s * 1000.0 <= slo.per_token_ms))
    if not facts.usable:
        tier = 4
    elif not facts.free_slot:
        tier = 2 if facts.can_queue else 3
    else:
        tier = 0 if meets else 1
    if carbon_g is None:
        carbon_g = (cost.energy_j / 3.6e6 * facts.ci_g_per_kwh * facts.pue
                    + facts.embodied_g_per_s * cost.runtime_s)
    return Scored(facts.name, cost.energy_j, carbon_g, cost.runtime_s, cost.ttft_s,
                  per_token_s, meets, tier)


Forecasts = Forecast | Mapping[str, Forecast]  # one for every pool, or one per pool name


def rank_by_cost(pools: Sequence[PoolFacts], forecast: Forecasts, *, lam: float,
                 objective: Objective = "carbon") -> list[Scored]:
    """Pools best first: by tier, then by U (ties: the less loaded)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must lie in [0, 1], got {lam}")
    scored = [score(facts, forecast if isinstance(forecast, Forecast) else forecast[facts.name])
              for facts in pools]
    if not scored:
        return []
    top_e = max(_footprint(s, objective) for s in scored) or 1.0
    top_r = max(s.runtime_s for s in scored) or 1.0
    loads = {facts.name: facts.load for facts in pools}
    ranked = [Scored(s.pool, s.energy_j, s.carbon_g, s.runtime_s, s.ttft_s, s.per_token_s,
                     s.meets_slo, s.tier,
                     lam * _footprint(s, objective) / top_e + (1.0 - lam) * s.runtime_s / top_r)
              for s in scored]
    ranked.sort(key=lambda s: (s.tier, s.cost, loads[s.pool]))
    return ranked


def rank_by_threshold(pools: Sequence[PoolFacts], forecast: Forecasts, *, efficient_pool: str,
                      max_input_tokens: float, max_output_tokens: float, lam: float,
                      objective: Objective = "carbon") -> list[Scored]:
    """Wilkins' rule: short requests to the efficient pool, the rest by cost elsewhere."""
    ranked = rank_by_cost(pools, forecast, lam=lam, objective=objective)
    mine = forecast if isinstance(forecast, Forecast) else forecast.get(efficient_pool)
    short = (mine is not None and mine.input_tokens <= max_input_tokens
             and mine.output_tokens <= max_output_tokens)
    efficient = [s for s in ranked if s.pool == efficient_pool]
    if not efficient:
        return ranked
    others = [s for s in ranked if s.pool != efficient_pool]
    if short and efficient[0].tier == 0:
        return efficient + others
    # A long request (or an efficient pool that is busy or failing) tries it only after the
    # other pools of the same tier.
    tier = efficient[0].tier
    return ([s for s in others if s.tier <= tier] + efficient
            + [s for s in others if s.tier > tier])


def _footprint(scored: Scored, objective: Objective) -> float:
    return scored.carbon_g if objective == "carbon" else scored.energy_j
