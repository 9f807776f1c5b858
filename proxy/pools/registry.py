"""PoolRegistry: which pools serve which model on which endpoint, and their live state."""

from __future__ import annotations

import dataclasses
import itertools

from proxy.backends.base import Backend
from proxy.errors import InvalidRequest, NotFound
from proxy.pools.admission import Admission, filled_shares, share
from proxy.pools.breaker import CircuitBreaker
from proxy.pools.config import Endpoint, PoolConfig

WILDCARD = "*"


class Pool:
    """A configured pool with its backends and admission state."""

    def __init__(self, config: PoolConfig, backends: list[Backend]) -> None:
        if not backends:
            raise ValueError(f"pool {config.name!r} has no backends")
        self.config = config
        self.name = config.name
        self.backends = backends
        self.breakers = [CircuitBreaker(config.breaker_failures, config.breaker_cooldown_s)
                         for _ in backends]
        per_backend = config.max_concurrency_per_backend
        # This replica's share of each backend's limit (all of it until the heartbeat says).
        self.backend_limits: list[int] | None = (
            [per_backend] * len(backends) if per_backend is not None else None)
        self.admission = Admission(self._pool_limit(config.max_concurrency), config.max_queue)
        self.admission.max_concurrency = config.max_concurrency
        self.backend_in_flight = [0] * len(backends)
        self._next = itertools.count()
        # No model names configured (and none discovered): pass any model name through.
        self.routes = {route.name: route.target for route in config.models} or {WILDCARD: ""}

    def _pool_limit(self, limit: int) -> int:
        if self.backend_limits is not None:
            return min(limit, sum(self.backend_limits))
        return limit

    def take_share(self, replicas_alive: int, index: int) -> None:
        """Take this replica's share of the fleet-wide limits (see `proxy/jobs/heartbeat.py`)."""
        per_backend = self.config.max_concurrency_per_backend
        caps: list[int | None] = [None] * replicas_alive
        if per_backend is not None:
            caps = [sum(share(per_backend, replicas_alive, replica, offset)
                        for offset in range(len(self.backends)))
                    for replica in range(replicas_alive)]
            self.backend_limits = [share(per_backend, replicas_alive, index, offset)
                                   for offset in range(len(self.backends))]
        self.admission.set_limit(filled_shares(self.config.max_concurrency, caps)[index])

    def attempt_order(self, attempts: int) -> list[tuple[Backend, CircuitBreaker]]:
        """Backends for successive attempts, skipping those whose circuit breaker is open.

        Round-robin start, then the others in turn; with a per-backend limit, the least busy
        first and none at its limit. Possibly empty (the pool is unusable).
        """
        start = next(self._next)
        count = len(self.backends)
        indices = [(start + i) % count for i in range(count)]
        if self.backend_limits is not None:
            limits = self.backend_limits
            indices = sorted((i for i in indices if self.backend_in_flight[i] < limits[i]),
                             key=lambda i: self.backend_in_flight[i])
        order = []
        for i in range(attempts if indices else 0):
            index = indices[i % len(indices)]
            breaker = self.breakers[index]
            if breaker.allow():
                order.append((self.backends[index], breaker))
        return order

    def claim(self, backend: Backend) -> None:
        """A request is being sent to `backend` (counts towards its limit)."""
        self.backend_in_flight[self.backends.index(backend)] += 1

    def unclaim(self, backend: Backend) -> None:
        """That request is over (or never got its first byte)."""
        self.backend_in_flight[self.backends.index(backend)] -= 1

    @property
    def usable(self) -> bool:
        """Whether any backend's breaker lets requests through (without taking a trial)."""
        return any(breaker.state != "open" for breaker in self.breakers)

    def upstream_model(self, model: str) -> str | None:
        """The upstream name of `model`, or None if this pool does not serve it."""
        target = self.routes.get(model)
        if target is not None:
            return target
        return model if WILDCARD in self.routes else None

    async def aclose(self) -> None:
        """Close the backends' connections."""
        for backend in self.backends:
            await backend.aclose()


def serves(pool: Pool, endpoint: Endpoint) -> bool:
    """Whether a pool can answer an endpoint (Responses also through chat, translated)."""
    endpoints = pool.config.endpoints
    return endpoint in endpoints or (endpoint == "responses" and "chat" in endpoints)


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes."""

    pool: Pool
    upstream_model: str


class PoolRegistry:
    """Resolves a (model, endpoint) to a pool; the least-loaded pool wins among equals."""

    def __init__(self, pools: list[Pool]) -> None:
        self.pools = pools

    def candidates(self, model: str, endpoint: Endpoint) -> list[Route]:
        """Every pool that can take the request, best first; failover goes down the list.

        Usable pools (a breaker not open) come before unusable ones, then the least loaded.
        """
        first = self.resolve(model, endpoint)
        others = [Route(pool, pool.upstream_model(model) or model) for pool in self.pools
                  if pool is not first.pool and pool.upstream_model(model) is not None
                  and serves(pool, endpoint)]
        others.sort(key=lambda route: (not route.pool.usable, route.pool.admission.load))
        return [first, *others]

    def resolve(self, model: str, endpoint: Endpoint) -> Route:
        """The route for a request, or a clear 404/400 in OpenAI's terms."""
        serving = [(pool, pool.upstream_model(model)) for pool in self.pools]
        candidates = [(pool, target) for pool, target in serving if target is not None]
        if not candidates:
            raise NotFound(
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
                param="model",
            )
        able = [(pool, target) for pool, target in candidates if serves(pool, endpoint)]
        if not able:
            raise InvalidRequest(
                f"The model `{model}` does not support the {endpoint} endpoint on any "
                f"configured pool.",
                code="unsupported_endpoint",
                param="model",
            )
        pool, target = min(able, key=lambda pair: (not pair[0].usable, pair[0].admission.load))
        return Route(pool, target)

    def model_ids(self) -> list[str]:
        """Every model name the pools serve (wildcard pools list nothing)."""
        names = {name for pool in self.pools for name in pool.routes if name != WILDCARD}
        return sorted(names)

    async def aclose(self) -> None:
        """Close every pool."""
        for pool in self.pools:
            await pool.aclose()
