"""Assemble pool configs from every source, and discover model names an upstream serves."""

from __future__ import annotations

import json
import logging

import httpx
from pydantic import BaseModel

from proxy.config import Settings
from proxy.httpclient import job_client
from proxy.pools.config import HTTP_KINDS, ModelRoute, PoolAccounting, PoolConfig, load_pools_file
from proxy.redact import redact_text, redact_url

log = logging.getLogger(__name__)

QUICK_START_POOL = "default"


def configured_pools(settings: Settings) -> list[PoolConfig]:
    """Pools from the YAML file, then PROXY_POOLS, then the quick-start upstream."""
    pools: list[PoolConfig] = []
    if settings.pools_file is not None:
        pools.extend(load_pools_file(settings.pools_file))
    pools.extend(settings.pools)
    if settings.upstream_url:
        pools.append(
            PoolConfig(
                name=QUICK_START_POOL,
                kind="openai",
                base_urls=[settings.upstream_url],
                models=[ModelRoute(name=name) for name in settings.upstream_models],
                api_key=settings.upstream_api_key,
                endpoints=["chat", "completions", "embeddings"],
                accounting=PoolAccounting(hardware=settings.upstream_hardware),
            )
        )
    names = [pool.name for pool in pools]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"pool names must be unique; repeated: {', '.join(duplicates)}")
    return pools


class _ModelsPage(BaseModel):
    data: list[ModelRoute]


async def discover_models(pool: PoolConfig, timeout_s: float = 3.0) -> PoolConfig:
    """For an `openai` pool configured without models, ask its first backend's `/models`.

    If the upstream cannot be reached the pool stays a wildcard (any model name passes through).
    """
    if pool.kind not in HTTP_KINDS or pool.models:
        return pool
    headers = pool.auth_headers()
    try:
        async with job_client(timeout_s) as client:
            response = await client.get(pool.base_urls[0] + "/models", headers=headers)
            response.raise_for_status()
            page = _ModelsPage.model_validate_json(_ids_as_names(response.content))
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("pool %s: could not list models at %s (%s); passing any model through",
                    pool.name, redact_url(pool.base_urls[0]), redact_text(str(exc)))
        return pool
    log.info("pool %s serves %s", pool.name, ", ".join(r.name for r in page.data))
    return pool.model_copy(update={"models": page.data})


def _ids_as_names(body: bytes) -> bytes:
    document = json.loads(body)
    names = [{"name": item["id"]} for item in document.get("data", [])]
    return json.dumps({"data": names}).encode()
