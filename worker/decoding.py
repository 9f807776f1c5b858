"""Old-GPU techniques: speculative decoding with a draft model, and prefill/decode split.

- Speculative decoding: a small draft model (e.g. on an old GPU, or the CPU) proposes tokens
  that the main model verifies in one pass (transformers' assisted generation). Greedy output
  is exactly the main model's greedy output.
- Disaggregation: prefill on one device (a compute-rich GPU), then the KV cache moves to the
  decode device (an old GPU with enough memory) where tokens are generated one at a time.
Both are chosen when the worker starts (`--draft-model`, `--prefill-device`); responses say
which one ran in the `x-sprout-decoding` header, which the proxy stores in the ledger.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import torch


def move_cache(cache: Any, device: str) -> Any:
    """Move a KV cache (transformers' DynamicCache, or legacy tuples) to another device."""
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            layer.keys = layer.keys.to(device)
            layer.values = layer.values.to(device)
        return cache
    return tuple(tuple(t.to(device) for t in layer) for layer in cache)


def pick_token(logits: torch.Tensor, temperature: float, top_p: float,
               generator: torch.Generator | None) -> int:
    """Greedy when temperature is 0, else temperature and nucleus sampling."""
    if temperature <= 0:
        return int(torch.argmax(logits, dim=-1).item())
    probabilities = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p < 1.0:
        ordered, index = torch.sort(probabilities, descending=True)
        keep = torch.cumsum(ordered, dim=-1) - ordered < top_p
        ordered = ordered * keep
        probabilities = torch.zeros_like(probabilities).scatter(-1, index, ordered)
        probabilities = probabilities / probabilities.sum()
    return int(torch.multinomial(probabilities, 1, generator=generator).item())


def generate_disaggregated(
    prefill_model: Any, decode_model: Any, prompt_ids: list[int], *, max_new_tokens: int,
    eos_token_id: int | None, temperature: float, top_p: float, seed: int | None,
    on_token: Callable[[int], None], cancel: threading.Event,
    stop_check: Callable[[list[int]], bool] = lambda _ids: False,
) -> list[int]:
    """Prefill on `prefill_model`'s device, decode on `decode_model`'s; returns new token ids."""
    prefill_device = str(next(prefill_model.parameters()).device)
    decode_device = str(next(decode_model.parameters()).device)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=decode_device)
        generator.manual_seed(seed)
    generated: list[int] = []
    with torch.inference_mode():
        prompt = torch.tensor([prompt_ids], device=prefill_device)
        output = prefill_model(prompt, use_cache=True)
        cache = move_cache(output.past_key_values, decode_device)
        logits = output.logits[0, -1].to(decode_device)
        while len(generated) < max_new_tokens and not cancel.is_set():
            token = pick_token(logits, temperature, top_p, generator)
            generated.append(token)
            on_token(token)
            if token == eos_token_id or stop_check(generated):
                break
            output = decode_model(torch.tensor([[token]], device=decode_device),
                                  past_key_values=cache, use_cache=True)
            cache = output.past_key_values
            logits = output.logits[0, -1]
    return generated


def prefill_layers(model: Any, prompt_ids: list[int]) -> tuple[list[tuple[Any, Any]], Any]:
    """Prefill for a remote decode: the KV of all prompt tokens but the last, and the logits.

    The last prompt token is left for the decode worker to run against the pulled cache (as
    vLLM's connectors do), so the decode side gets its first logits from its own model.
    """
    device = str(next(model.parameters()).device)
    with torch.inference_mode():
        output = model(torch.tensor([prompt_ids], device=device), use_cache=True)
        kept = len(prompt_ids) - 1  # the sequence axis is the third: (batch, heads, seq, dim)
        layers = [(layer.keys[:, :, :kept, :], layer.values[:, :, :kept, :])
                  for layer in output.past_key_values.layers]
    return layers, output.logits[0, -1]


def decode_pulled(
    model: Any, layers: list[tuple[Any, Any]], last_prompt_id: int, *, max_new_tokens: int,
    eos_ids: frozenset[int], temperature: float, top_p: float, seed: int | None,
    on_token: Callable[[int], None], cancel: threading.Event,
    stop_check: Callable[[list[int]], bool] = lambda _ids: False,
) -> list[int]:
    """Continue from a pulled prompt cache: run the last prompt token, then decode."""
    from transformers import DynamicCache

    device = str(next(model.parameters()).device)
    dtype = next(model.parameters()).dtype
    cache = DynamicCache()
    for index, (keys, values) in enumerate(layers):
        cache.update(keys.to(device, dtype), values.to(device, dtype), index)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(seed)
    generated: list[int] = []
    token = last_prompt_id
    with torch.inference_mode():
        while len(generated) < max_new_tokens and not cancel.is_set():
            output = model(torch.tensor([[token]], device=device), past_key_values=cache,
                           use_cache=True)
            cache = output.past_key_values
            token = pick_token(output.logits[0, -1], temperature, top_p, generator)
            generated.append(token)
            on_token(token)
            if token in eos_ids or stop_check(generated):
                break
    return generated
