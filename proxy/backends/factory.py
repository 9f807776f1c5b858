"""Build the backends of a pool from its configuration."""

from __future__ import annotations

from proxy.backends.base import Backend
from proxy.backends.openai_compatible import OpenAICompatibleBackend, make_transport, timeouts
from proxy.energy.devices import DeviceMap
from proxy.pools.config import ModelRoute, PoolConfig
from proxy.pools.registry import Pool


def build_pools(configs: list[PoolConfig], devices: DeviceMap) -> list[Pool]:
    """Every pool with its backends; a `disaggregated` pool over the pools it names."""
    pools = {c.name: Pool(c, build_backends(c)) for c in configs if c.kind != "disaggregated"}
    built = dict(pools)
    for config in configs:
        if config.kind != "disaggregated":
            continue
        from proxy.backends.disaggregated import DisaggregatedBackend

        members = []
        for role, name in (("prefill_pool", config.prefill_pool),
                           ("decode_pool", config.decode_pool)):
            if name not in pools:
                raise ValueError(f"pool {config.name!r}: {role} {name!r} is not a configured "
                                 f"pool (known: {', '.join(sorted(pools)) or 'none'})")
            members.append(pools[name])
        prefill, decode = members
        if not config.models:  # the models both legs serve, by their client names
            names = sorted(set(decode.routes) & set(prefill.routes) - {"*"})
            config = config.model_copy(update={"models": [ModelRoute(name=n) for n in names]})
        built[config.name] = Pool(config, [DisaggregatedBackend(config, prefill, decode,
                                                                devices)])
    return [built[c.name] for c in configs]


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
