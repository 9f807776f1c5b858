"""Refresh jobs every replica runs: virtual keys from the database, models from upstreams.

Keys: a key revoked or re-policied through any replica's admin API is seen by every replica
at its next refresh (`keys_refresh_s`, default 2 s; the issue's bound is 5 s). Models: pools
configured without model names ask their upstream's `/models` again every
`pool_discovery_interval_s`, so a model deployed later is served without a restart.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import Engine

from proxy.auth.keys import KeyRing, load_virtual_keys
from proxy.pools.config import HTTP_KINDS, PoolConfig
from proxy.pools.discovery import discover_models
from proxy.pools.registry import PoolRegistry

log = logging.getLogger(__name__)


class KeyRefresh:
    """Swaps the KeyRing's copies for the database's."""

    def __init__(self, engine: Engine, keys: KeyRing) -> None:
        self._engine = engine
        self._keys = keys

    async def run_once(self) -> str:
        """One read of the active keys."""
        digests, policies = await asyncio.to_thread(load_virtual_keys, self._engine)
        self._keys.replace_virtual(digests, policies)
        return f"{len(digests)} virtual keys"


class ModelRediscovery:
    """Re-asks `/models` for the pools that were configured without model names."""

    def __init__(self, registry: PoolRegistry, configured: dict[str, PoolConfig]) -> None:
        self._registry = registry
        self._configured = {name: config for name, config in configured.items()
                            if config.kind in HTTP_KINDS and not config.models}

    async def run_once(self) -> str:
        """Update each discovering pool's model routes."""
        changed = 0
        for pool in self._registry.pools:
            config = self._configured.get(pool.name)
            if config is None:
                continue
            found = await discover_models(config)
            routes = {route.name: route.target for route in found.models}
            if routes and routes != pool.routes:
                pool.routes = routes
                changed += 1
                log.info("pool %s now serves %s", pool.name, ", ".join(sorted(routes)))
        return f"{changed} pools changed"
