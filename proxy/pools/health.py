"""Health probes: a cheap `GET /models` per backend on a schedule, off the request path.

Results feed each backend's circuit breaker (`CircuitBreaker.record_probe`): a backend that
stops answering is opened after `breaker_failures` failed probes, before a client request
has to fail over from it; one that only probes opened is closed again when it answers.
litellm pools (hosted providers) are not probed: their health is the provider's.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

from proxy.httpclient import job_client
from proxy.pools.config import HTTP_KINDS
from proxy.pools.registry import Pool, PoolRegistry

log = logging.getLogger(__name__)


class HealthChecker:
    """`check_once` probes every openai-kind backend concurrently."""

    def __init__(self, registry: PoolRegistry, timeout_s: float = 2.0) -> None:
        self.registry = registry
        self.timeout_s = timeout_s
        self.last: dict[str, bool] = {}  # backend URL -> last probe passed

    async def check_once(self) -> dict[str, bool]:
        """Probe, update the breakers, return {backend URL: ok}."""
        probes = [(pool, index) for pool in self.registry.pools if pool.config.kind in HTTP_KINDS
                  for index in range(len(pool.backends))]
        async with job_client(self.timeout_s) as client:
            results = await asyncio.gather(*(self._probe(client, pool, index)
                                             for pool, index in probes))
        for (pool, index), ok in zip(probes, results, strict=True):
            url = pool.backends[index].url
            if not ok and self.last.get(url, True):
                log.warning("pool %s: backend %s failed its health probe", pool.name, url)
            pool.breakers[index].record_probe(ok)
            self.last[url] = ok
        return dict(self.last)

    async def _probe(self, client: httpx.AsyncClient, pool: Pool, index: int) -> bool:
        try:
            response = await client.get(pool.backends[index].target_url + "/models",
                                        headers=pool.config.auth_headers())
        except httpx.HTTPError:
            return False
        return response.status_code < 500
