"""vLLM's prefill/decode protocol on the worker: `kv_transfer_params` in, KV pulled over HTTP.

What a P/D router (vLLM's toy proxies, or sprout-proxy's `disaggregated` pool) sends:

- to a prefill instance: the request with `max_tokens: 1`, `stream: false` and
  `kv_transfer_params: {"do_remote_decode": true, "do_remote_prefill": false, ...}`. The
  worker answers the one token as usual and adds, like vLLM's NIXL connector, the
  parameters a decode instance needs: `do_remote_prefill: true`, `do_remote_decode: false`,
  `remote_engine_id`, `remote_host`, `remote_port`, `remote_block_ids` (none: the worker
  holds one contiguous cache), and `remote_request_id`, the held entry's id.
- to a decode instance: the original request with those parameters. The worker pulls
  `GET http://remote_host:remote_port/v1/kv/{remote_request_id}`, checks that the cache
  covers its own prompt, and decodes from it. A cache it cannot pull or use (expired,
  released, another prompt) is recomputed locally: the answer is the same, only slower, and
  the response says so (`x-sprout-kv: recomputed`).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from proxy.errors import InvalidRequest
from worker.kv_store import HeldKV, KVStore, parse_kv

log = logging.getLogger(__name__)

KV_MEDIA_TYPE = "application/vnd.sprout.kv+safetensors"
PULL_TIMEOUT_S = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class KVAddress:
    """Where decode workers reach this worker to pull held caches."""

    host: str
    port: int
    engine_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)


@dataclasses.dataclass(frozen=True, slots=True)
class Pulled:
    """A decode request's prompt cache: the layers if pulled and usable, and bytes moved."""

    layers: list[tuple[Any, Any]] | None
    size_bytes: int
    note: str  # pulled | recomputed: <why>


def transfer_params(extra: dict[str, Any]) -> dict[str, Any] | None:
    """The request's `kv_transfer_params`, if any; a 400 if it is not an object."""
    params = extra.get("kv_transfer_params")
    if params is None:
        return None
    if not isinstance(params, dict):
        raise InvalidRequest("kv_transfer_params must be an object", param="kv_transfer_params")
    return params


def wants_prefill_only(params: dict[str, Any] | None) -> bool:
    """A prefill leg: compute the prompt's cache and hold it for a remote decode."""
    return bool(params and params.get("do_remote_decode"))


def wants_pull(params: dict[str, Any] | None) -> bool:
    """A decode leg whose prompt cache waits on a prefill worker."""
    return bool(params and params.get("do_remote_prefill"))


def prefill_answer(address: KVAddress, entry: HeldKV | None) -> dict[str, Any] | None:
    """The `kv_transfer_params` a prefill response carries (None: nothing held)."""
    if entry is None:
        return None
    return {"do_remote_prefill": True, "do_remote_decode": False,
            "remote_engine_id": address.engine_id, "remote_block_ids": None,
            "remote_host": address.host, "remote_port": address.port,
            "remote_request_id": entry.entry_id, "remote_num_tokens": len(entry.prompt_ids),
            "tp_size": 1}


async def pull(params: dict[str, Any], prompt_ids: list[int]) -> Pulled:
    """Fetch and check the cache the parameters name; never raises (recompute instead)."""
    host, port, entry = (params.get("remote_host"), params.get("remote_port"),
                         params.get("remote_request_id"))
    if not (isinstance(host, str) and isinstance(port, int) and isinstance(entry, str)):
        return Pulled(None, 0, "recomputed: kv_transfer_params name no pullable cache")
    url = f"http://{host}:{port}/v1/kv/{entry}"
    try:
        async with httpx.AsyncClient(timeout=PULL_TIMEOUT_S, trust_env=False) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        return Pulled(None, 0, f"recomputed: pull failed ({type(exc).__name__})")
    if response.status_code != 200:
        return Pulled(None, 0, f"recomputed: pull answered HTTP {response.status_code}")
    try:
        held_ids, layers = parse_kv(response.content)
    except ValueError as exc:
        return Pulled(None, len(response.content), f"recomputed: {exc}")
    if held_ids != prompt_ids[:-1] or not prompt_ids:
        return Pulled(None, len(response.content), "recomputed: the cache is another prompt's")
    return Pulled(layers, len(response.content), "pulled")


def kv_router(store: KVStore) -> APIRouter:
    """`GET /v1/kv/{id}` (pull, repeatable until expiry) and `DELETE /v1/kv/{id}` (release)."""
    router = APIRouter()

    @router.get("/v1/kv/{entry_id}")
    async def pull_kv(entry_id: str) -> Response:
        entry = store.get(entry_id)
        if entry is None:
            return _not_held()
        return Response(entry.body, media_type=KV_MEDIA_TYPE,
                        headers={"x-sprout-kv-bytes": str(entry.size_bytes)})

    @router.delete("/v1/kv/{entry_id}")
    async def release_kv(entry_id: str) -> Response:
        if not store.release(entry_id):
            return _not_held()
        return Response(status_code=204)

    return router


def _not_held() -> Response:
    return JSONResponse(status_code=404, content={"error": {
        "message": "no KV cache is held under that id (released, expired or never held)",
        "type": "invalid_request_error", "param": None, "code": "kv_not_held"}})
