"""PDUpstream: a scripted vLLM instance with a KV connector (NIXL-style P/D fields).

What a vLLM instance started with `--kv-transfer-config '{"kv_connector":"NixlConnector",
"kv_role":"kv_both"}'` does with the P/D fields, reduced to what a router can see:

- a request whose `kv_transfer_params` says `do_remote_decode: true` is a prefill leg: it is
  answered with one token, unstreamed, and a top-level `kv_transfer_params` naming where the
  blocks wait (`do_remote_prefill: true`, `do_remote_decode: false`, `remote_engine_id`,
  `remote_block_ids`, `remote_host`, `remote_port`, `remote_request_id`, `tp_size`), as
  NIXL's `request_finished` returns them;
- any other request (a decode leg carrying those parameters, or a plain one) is answered as
  `ScriptedUpstream` answers it.

Every body is kept (`stats.bodies`), so a contract test can check field by field what the
router sent. No `x-sprout-kv-bytes` header: vLLM sends none, so the proxy estimates the bytes.
"""

from __future__ import annotations

import itertools
from typing import Any

from starlette.types import Receive, Send

from proxy.fakes.upstream import Behaviour, ScriptedUpstream, _json


class PDUpstream(ScriptedUpstream):
    """A scripted upstream that also answers vLLM's prefill legs."""

    def __init__(self, models: tuple[str, ...] = ("fake-model",), name: str = "vllm-pd",
                 *, host: str = "10.0.0.7", port: int = 5600) -> None:
        super().__init__(models, name)
        self.host = host
        self.port = port
        self._ids = itertools.count(1)
        self.prefills: list[dict[str, Any]] = []  # the kv_transfer_params each prefill gave

    async def _answer(self, endpoint: str, request: dict[str, Any], behaviour: Behaviour,
                      receive: Receive, send: Send) -> None:
        params = request.get("kv_transfer_params") or {}
        if not params.get("do_remote_decode") or behaviour.status != 200:
            return await super()._answer(endpoint, request, behaviour, receive, send)
        number = next(self._ids)
        answer = {"do_remote_prefill": True, "do_remote_decode": False,
                  "remote_engine_id": f"{self.name}-engine",
                  "remote_block_ids": [3 * number, 3 * number + 1, 3 * number + 2],
                  "remote_host": self.host, "remote_port": self.port,
                  "remote_request_id": f"cmpl-{self.name}-{number}", "tp_size": 1}
        self.prefills.append(answer)
        prompt_tokens = len(str(request.get("messages") or request.get("prompt"))) // 4 or 1
        choice: dict[str, Any] = {"index": 0, "finish_reason": "length", "logprobs": None}
        if endpoint == "chat":
            choice["message"] = {"role": "assistant", "content": "tok0"}
        else:
            choice["text"] = "tok0"
        self.stats.completed += 1
        await _json(send, 200, {
            "id": f"cmpl-{number}", "object": "chat.completion" if endpoint == "chat" else
            "text_completion", "created": 0, "model": request.get("model"),
            "choices": [choice], "kv_transfer_params": answer,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 1,
                      "total_tokens": prompt_tokens + 1}})
