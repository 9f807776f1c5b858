"""Build the backends of a pool from its configuration."""

from __future__ import annotations

from proxy.backends.base import Backend
from proxy.backends.openai_compatible import OpenAICompatibleBackend, make_transport, timeouts
from proxy.pools.config import PoolConfig


def build_backends(config: PoolConfig) -> list[Backend]:
    """One backend per base URL; an `openai` pool shares one connection pool among them."""
    if config.kind in ("openai", "worker"):
        transport = make_transport(
            config.base_urls,
            max_connections=config.max_concurrency,
            connect_timeout_s=config.connect_timeout_s,
            read_timeout_s=config.read_timeout_s,
        )
        limits = timeouts(config.connect_timeout_s, config.read_timeout_s)
        return [
            OpenAICompatibleBackend(url, transport, config.api_key, limits)
            for url in config.base_urls
        ]
    from proxy.backends.litellm_backend import LiteLLMBackend  # heavy import, only when used

    bases: list[str | None] = list(config.base_urls) or [None]
    return [LiteLLMBackend(base, config.api_key, config.read_timeout_s) for base in bases]
