"""KVStore: prompt KV caches a prefill worker holds for decode workers to pull (bounded, expiring).

The worker's side of vLLM's prefill/decode protocol (`kv_transfer_params`). A prefill request
(`do_remote_decode: true`) leaves its prompt's KV cache here under an unguessable id; the
response's `kv_transfer_params` name the id (`remote_request_id`) and where to pull it
(`remote_host`, `remote_port`). A decode worker pulls it with `GET /v1/kv/{id}`, as often as
it likes until the entry expires, so a decode that fails before its first byte can be retried
on another decode worker. The proxy releases it (`DELETE /v1/kv/{id}`) once a decode has
started, or when the client goes away; the expiry frees what nobody released (a proxy that
died). Memory is bounded: past `max_bytes` a new prefill is refused (503), never an entry in
use evicted.

The wire form is safetensors (no pickle: a pulled body is data, never code): one tensor pair
per layer and, in the metadata, the prompt's token ids, so a decode worker checks that the
cache belongs to its own prompt before using it.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
DEFAULT_TTL_S = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class HeldKV:
    """One prompt's KV cache (all prompt tokens but the last), as bytes ready to send."""

    entry_id: str
    prompt_ids: tuple[int, ...]  # the tokens the cache covers
    body: bytes
    expires_s: float

    @property
    def size_bytes(self) -> int:
        """Bytes this entry holds (what a pull moves)."""
        return len(self.body)


@dataclasses.dataclass(slots=True)
class KVCounters:
    """What happened to held caches since start (for /health)."""

    held: int = 0
    pulled: int = 0
    released: int = 0
    expired: int = 0
    refused: int = 0


class KVFull(Exception):
    """Holding another cache would pass the memory bound."""


class KVStore:
    """Thread-safe: prefill threads put, HTTP handlers get and release."""

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES, ttl_s: float = DEFAULT_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, HeldKV] = {}
        self._bytes = 0
        self._lock = threading.Lock()
        self.counters = KVCounters()

    def put(self, prompt_ids: list[int], layers: list[tuple[torch.Tensor, torch.Tensor]]) -> HeldKV:
        """Hold a cache; raises `KVFull` if it does not fit beside the live entries."""
        tensors = {}
        for index, (keys, values) in enumerate(layers):
            tensors[f"k.{index}"] = keys.detach().to("cpu").contiguous()
            tensors[f"v.{index}"] = values.detach().to("cpu").contiguous()
        body = save_tensors(tensors, metadata={"prompt_ids": json.dumps(prompt_ids),
                                               "layers": str(len(layers))})
        with self._lock:
            self._expire()
            if self._bytes + len(body) > self.max_bytes:
                self.counters.refused += 1
                raise KVFull(f"holding {len(body)} more bytes of KV cache would pass this "
                             f"worker's bound ({self.max_bytes} bytes, {self._bytes} held)")
            entry = HeldKV(secrets.token_urlsafe(18), tuple(prompt_ids), body,
                           self._clock() + self.ttl_s)
            self._entries[entry.entry_id] = entry
            self._bytes += len(body)
            self.counters.held += 1
        return entry

    def get(self, entry_id: str) -> HeldKV | None:
        """The entry, if it is still held (pulling does not release it)."""
        with self._lock:
            self._expire()
            entry = self._entries.get(entry_id)
            if entry is not None:
                self.counters.pulled += 1
            return entry

    def release(self, entry_id: str) -> bool:
        """Free an entry; False if it was not held (released before, or expired)."""
        with self._lock:
            entry = self._entries.pop(entry_id, None)
            if entry is None:
                return False
            self._bytes -= entry.size_bytes
            self.counters.released += 1
            return True

    def stats(self) -> dict[str, Any]:
        """Entries and bytes held now, the bounds, and the counters."""
        with self._lock:
            self._expire()
            return {"entries": len(self._entries), "bytes": self._bytes,
                    "max_bytes": self.max_bytes, "ttl_s": self.ttl_s,
                    **dataclasses.asdict(self.counters)}

    def _expire(self) -> None:
        now = self._clock()
        for entry_id in [k for k, e in self._entries.items() if e.expires_s <= now]:
            entry = self._entries.pop(entry_id)
            self._bytes -= entry.size_bytes
            self.counters.expired += 1


def parse_kv(body: bytes) -> tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]:
    """The prompt ids and per-layer (keys, values) of a pulled body; ValueError if malformed."""
    try:
        tensors = load_tensors(body)
        header_len = int.from_bytes(body[:8], "little")
        metadata = json.loads(body[8:8 + header_len]).get("__metadata__", {})
        prompt_ids = [int(i) for i in json.loads(metadata["prompt_ids"])]
        count = int(metadata["layers"])
        layers = [(tensors[f"k.{i}"], tensors[f"v.{i}"]) for i in range(count)]
    except Exception as exc:  # safetensors raises several types for a bad body
        raise ValueError(f"not a KV cache this worker can read: {exc}") from exc
    return prompt_ids, layers
