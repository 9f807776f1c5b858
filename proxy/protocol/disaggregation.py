"""vLLM's prefill/decode (P/D) fields: the two legs a P/D router derives from one request.

What vLLM's own routers send (its NIXL toy proxy, `tests/v1/kv_connector/nixl_integration/`,
and `examples/online_serving/disaggregated_serving/`):

1. **Prefill leg**: the client's request with `stream: false`, `max_tokens: 1` (and
   `max_completion_tokens: 1` where the client set it), no `stream_options`, no `min_tokens` /
   `min_completion_tokens` (a prefill instance cannot honour them), and `kv_transfer_params`
   asking for a remote decode, every remote field null (`PREFILL_PARAMS`).
2. **Decode leg**: the client's request unchanged (streamed if it asked), plus the
   `kv_transfer_params` object the prefill response returned, passed on untouched: with NIXL
   `do_remote_prefill: true`, `remote_engine_id`, `remote_block_ids`, `remote_host`,
   `remote_port`, ... A prefill answer without one (nothing held) leaves the decode leg a
   plain request, which the decode instance prefills itself.

A client's own `kv_transfer_params` is never forwarded: those fields make an instance pull
from whatever host they name, so only the router sets them.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from proxy.protocol.chat import ChatCompletionRequest
from proxy.protocol.completions import CompletionRequest
from proxy.protocol.streaming import Usage

KV_TRANSFER_PARAMS = "kv_transfer_params"
PREFILL_PARAMS: dict[str, Any] = {
    "do_remote_decode": True, "do_remote_prefill": False, "remote_engine_id": None,
    "remote_block_ids": None, "remote_host": None, "remote_port": None}
# Sampling bounds a prefill instance cannot honour for a one-token answer.
_PREFILL_DROPS = ("stream_options", "min_tokens", "min_completion_tokens")

LegRequest = ChatCompletionRequest | CompletionRequest


def _fields(request: ChatCompletionRequest | CompletionRequest) -> dict[str, Any]:
    document = json.loads(request.to_json_bytes())
    document.pop(KV_TRANSFER_PARAMS, None)
    return dict(document)


def prefill_leg(request: LegRequest, model: str) -> LegRequest:
    """The request a prefill instance gets."""
    document = _fields(request)
    for name in _PREFILL_DROPS:
        document.pop(name, None)
    document |= {"model": model, "stream": False, "max_tokens": 1,
                 KV_TRANSFER_PARAMS: dict(PREFILL_PARAMS)}
    if "max_completion_tokens" in document:
        document["max_completion_tokens"] = 1
    return type(request).model_validate(document)


def decode_leg(request: LegRequest, model: str, params: dict[str, Any] | None) -> LegRequest:
    """The request a decode instance gets: the client's, carrying the prefill's parameters."""
    document = _fields(request) | {"model": model}
    if params:
        document[KV_TRANSFER_PARAMS] = params
    return type(request).model_validate(document)


def monolithic(request: LegRequest, model: str) -> LegRequest:
    """The client's request for one instance that does both phases (the fallback)."""
    return type(request).model_validate(_fields(request) | {"model": model})


class PrefillAnswer(BaseModel):
    """What the proxy reads from a prefill response: the parameters and the prompt tokens."""

    model_config = ConfigDict(extra="ignore")

    kv_transfer_params: dict[str, Any] | None = None
    usage: Usage | None = None

    @classmethod
    def parse(cls, body: bytes) -> PrefillAnswer | None:
        """None for a body that is not a completion object."""
        try:
            return cls.model_validate_json(body)
        except ValidationError:
            return None
