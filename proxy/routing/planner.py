"""JointPlanner: the inputs of the joint directive + placement LP, from live routing state.

For every task class, directive level and pool it predicts a request's gCO2e and busy seconds
with the router's own forecasts (output-length quantiles per class x level x pool, the class's
mean prompt) and cost model (each pool's profile, grid region, PUE, embodied share). Pool
capacity is its `max_concurrency`; the arrival rate is the last hour's client requests.
No I/O: the reoptimiser job calls it with terms built from the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence

from proxy.optimiser.allocation import ALL_CLASSES
from proxy.optimiser.joint import JointTerms, PoolCapacity
from proxy.optimiser.lp import ClassTerms
from proxy.pools.registry import PoolRegistry
from proxy.routing.cost import Forecast, score
from proxy.routing.router import Router


class JointPlanner:
    """Builds JointTerms and capacities for the current pools."""

    def __init__(self, router: Router, registry: PoolRegistry, max_utilisation: float) -> None:
        self.router = router
        self.registry = registry
        self.max_utilisation = max_utilisation

    def capacities(self) -> list[PoolCapacity]:
        """Each pool's concurrent slots and utilisation target."""
        return [PoolCapacity(pool.name, float(pool.config.max_concurrency),
                             self.max_utilisation) for pool in self.registry.pools]

    def terms(self, classes: Sequence[ClassTerms] | None,
              levels: tuple[str, ...]) -> list[JointTerms]:
        """Per class: share and quality from the Sprout terms, cost per (level, pool) predicted.

        Without Sprout terms (no verdicts yet) one pseudo-class, ALL_CLASSES, at the baseline
        level only, so the LP still places traffic by cost and capacity.
        """
        if not classes:
            classes = [ClassTerms(ALL_CLASSES, 1.0, tuple(0.0 for _ in levels),
                                  tuple(1.0 if i == 0 else 0.0 for i in range(len(levels))))]
        router = self.router
        now_s = router.clock()
        facts = [router.facts(pool, now_s) for pool in self.registry.pools]
        built = []
        for klass in classes:
            name = None if klass.name == ALL_CLASSES else klass.name
            input_tokens = router.inputs.predict(router.class_prompt_chars(name))
            carbon, busy = [], []
            for level in levels:
                scored = [score(pool, Forecast(
                    input_tokens, router.predictor.predict(name, level, pool.name),
                    router.predictor.spread(name, level, pool.name))) for pool in facts]
                carbon.append(tuple(s.carbon_g for s in scored))
                busy.append(tuple(s.runtime_s for s in scored))
            built.append(JointTerms(klass.name, klass.share, klass.quality, tuple(carbon),
                                    tuple(busy)))
        return built
