"""Engine: one Hugging Face causal LM on cuda / mps / cpu, generating with cancellation.

Two ways to generate:
- **continuous batching** (the default for plain decoding): transformers' own
  `ContinuousBatchingManager` (`worker/batching.py`) runs every concurrent request in one
  batch, joining and leaving it token by token;
- **one at a time** (`generate`, behind a lock): speculative decoding, the prefill/decode
  split, seeded sampling, log-probabilities, and `--batching off`.

`run` picks the path per request and always calls back on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from proxy.errors import InvalidRequest
from worker.decoding import decode_pulled, generate_disaggregated, pick_token, prefill_layers
from worker.kv_store import HeldKV, KVStore
from worker.text import StopWatch

log = logging.getLogger(__name__)


def gguf_location(model: str) -> tuple[str, str | None]:
    """(folder or id, GGUF file name or None) for a model argument.

    A path to a `.gguf` file, or a folder holding one GGUF file and no `config.json`, loads
    through transformers' GGUF support (weights de-quantised on load).
    """
    path = Path(model)
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ValueError(f"{model}: no such GGUF file")
        return str(path.parent), path.name
    if path.is_dir() and not (path / "config.json").exists():
        files = sorted(path.glob("*.gguf"))
        if len(files) == 1:
            return str(path), files[0].name
        if len(files) > 1:
            raise ValueError(f"{model} holds several GGUF files; name one of them")
    return model, None


def load_tokenizer(model: str) -> Any:
    """The tokenizer of a model id, folder or GGUF file."""
    folder, gguf_file = gguf_location(model)
    return AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)


def _load(model: str, device: str) -> Any:
    dtype = torch.float32 if device == "cpu" else torch.float16
    folder, gguf_file = gguf_location(model)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=dtype)
    loaded = loaded.to(device)
    loaded.eval()
    return loaded


def pick_device(requested: str = "auto") -> str:
    """`auto` prefers cuda, then Apple mps, then cpu."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@dataclasses.dataclass(frozen=True, slots=True)
class Sampling:
    """Decoding parameters of one request."""

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    top_logprobs: int | None = None  # log-probabilities of each token (and this many rivals)


@dataclasses.dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token's log-probability and its most likely rivals."""

    token_id: int
    logprob: float
    top: tuple[tuple[int, float], ...]


@dataclasses.dataclass(slots=True)
class Generation:
    """What one generation produced."""

    prompt_tokens: int
    completion_ids: list[int]
    finish_reason: str
    cancelled: bool = False
    text: str | None = None  # the answer, cut before a stop sequence (None: decode the ids)
    logprobs: list[TokenLogprob] | None = None


class _TokenSink(BaseStreamer):
    """Receives generated token ids from `generate` (the first call carries the prompt)."""

    def __init__(self, on_token: Callable[[int], None]) -> None:
        self._on_token = on_token
        self._prompt_seen = False
        self.ids: list[int] = []

    def put(self, value: Any) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        for token_id in value.reshape(-1).tolist():
            self.ids.append(int(token_id))
            self._on_token(int(token_id))

    def end(self) -> None:
        return None


class _Stop(StoppingCriteria):
    """Stops `generate` on cancellation or once a stop sequence shows in the text."""

    def __init__(self, event: threading.Event, watch: StopWatch, sink: _TokenSink) -> None:
        self._event = event
        self._watch = watch
        self._sink = sink

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        done = self._event.is_set() or self._watch.hit(self._sink.ids)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class _RecordLogprobs(LogitsProcessor):
    """Keeps each step's log-softmax of the model's own logits (before sampling warpers)."""

    def __init__(self) -> None:
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids: Any, scores: torch.Tensor) -> torch.Tensor:
        self.steps.append(torch.log_softmax(scores[0].float(), dim=-1).cpu())
        return scores


class Engine:
    """Loads a model by Hugging Face id, local folder or GGUF file."""

    def __init__(self, model: str, *, device: str = "auto", served_name: str | None = None,
                 draft_model: str | None = None, draft_device: str | None = None,
                 prefill_device: str | None = None, batching: bool = True,
                 kv_cache_tokens: int = 8192, max_batch_tokens: int = 512):
        if draft_model and prefill_device:
            raise ValueError("choose speculative decoding or a prefill/decode split, not both")
        self.device = pick_device(device)
        self.tokenizer = load_tokenizer(model)
        self.model = _load(model, self.device)
        self.draft = _load(draft_model, pick_device(draft_device or "cpu")) if draft_model else None
        self.prefill_model = (_load(model, pick_device(prefill_device))
                              if prefill_device else None)
        # Every device this engine computes on (metering must cover all of them).
        self.devices = sorted({str(self.device),
                               *([str(pick_device(draft_device or "cpu"))] if draft_model else []),
                               *([str(pick_device(prefill_device))] if prefill_device else [])})
        self.decoding = ("speculative" if self.draft is not None else
                         "disaggregated" if self.prefill_model is not None else "standard")
        self.served_name = served_name or _served_name(model)
        self.context_limit = _context_limit(self.model, self.tokenizer)
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self.vocab_size = int(self.model.get_input_embeddings().num_embeddings)
        self._lock = threading.Lock()
        self.batcher = None
        if batching and self.decoding == "standard":
            from worker.batching import Batcher

            self.batcher = Batcher(self.model, eos_ids=sorted(self.eos_ids),
                                   pad_id=self._pad_id(), kv_cache_tokens=kv_cache_tokens,
                                   max_batch_tokens=max_batch_tokens)
        self.batching = self.batcher is not None
        log.info("loaded %s on %s (%s decoding, %s)", model, self.device, self.decoding,
                 "continuous batching" if self.batching else "one generation at a time")

    def close(self) -> None:
        """Stop the batching threads (a no-op without batching)."""
        if self.batcher is not None:
            self.batcher.close()

    def _pad_id(self) -> int:
        pad = self.tokenizer.pad_token_id
        return int(pad if pad is not None else min(self.eos_ids))

    def chat_prompt(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Token ids of a conversation through the model's chat template."""
        ids = self.tokenizer.apply_chat_template(
            list(messages), add_generation_prompt=True, tokenize=True, return_dict=False
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return [int(i) for i in ids]

    def text_prompt(self, prompt: str | list[int]) -> list[int]:
        """Token ids of a plain prompt (token-id prompts pass through)."""
        if isinstance(prompt, list):
            bad = next((i for i in prompt if not 0 <= i < self.vocab_size), None)
            if bad is not None:
                raise InvalidRequest(f"token id {bad} is outside this model's vocabulary "
                                     f"(0 to {self.vocab_size - 1})", param="prompt")
            return [int(i) for i in prompt]
        return [int(i) for i in self.tokenizer(prompt)["input_ids"]]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def token_text(self, token_id: int) -> str:
        """The text one token stands for (as logprobs report it)."""
        return str(self.tokenizer.decode([token_id], skip_special_tokens=False))

    def uses_batching(self, sampling: Sampling) -> bool:
        """Whether this request joins the running batch (else it runs alone, pausing it)."""
        seeded = sampling.seed is not None and sampling.temperature > 0  # greedy ignores it
        return self.batcher is not None and not seeded and sampling.top_logprobs is None

    async def run(self, prompt_ids: list[int], sampling: Sampling, *,
                  on_token: Callable[[int], None] = lambda _id: None) -> Generation:
        """Generate; `on_token` runs on this event loop.

        Cancelling the task stops the model within one token: the batch drops the request,
        the lone path stops at its next step.
        """
        if self.batcher is not None and self.uses_batching(sampling):
            watch = StopWatch(self.decode, sampling.stop)
            ids = await self.batcher.run(prompt_ids, sampling, on_token, watch.hit)
            return self._finish(prompt_ids, ids, sampling, watch, cancelled=False)
        loop = asyncio.get_running_loop()
        cancel = threading.Event()

        def from_thread(token: int) -> None:
            loop.call_soon_threadsafe(on_token, token)

        job = asyncio.ensure_future(asyncio.to_thread(
            self.generate, prompt_ids, sampling, on_token=from_thread, cancel=cancel))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            cancel.set()
            with contextlib.suppress(Exception):
                await job  # the thread stops at its next token; never leave it running
            raise

    @contextlib.contextmanager
    def _seeded(self, seed: int | None) -> Iterator[None]:
        """The request's seed, in a forked random state.

        The sampling batch draws from the global state afterwards: it must not follow from a
        client's seed.
        """
        if seed is None:
            yield
            return
        device = torch.device(self.device)
        devices = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    @contextlib.contextmanager
    def _alone(self) -> Iterator[None]:
        """Exclusive use of the model: the lock, and the batch paused (keeping its requests)."""
        with self._lock, (self.batcher.paused() if self.batcher is not None
                          else contextlib.nullcontext()):
            yield

    def generate(
        self,
        prompt_ids: list[int],
        sampling: Sampling,
        *,
        on_token: Callable[[int], None] = lambda _id: None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        """Generate one request alone (blocking: call from a thread).

        `cancel` stops it within one token.
        """
        cancel = cancel or threading.Event()
        sink = _TokenSink(on_token)
        watch = StopWatch(self.decode, sampling.stop)
        if self.prefill_model is not None:
            return self._generate_split(prompt_ids, sampling, sink, cancel, watch)
        recorder = _RecordLogprobs() if sampling.top_logprobs is not None else None
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "streamer": sink,
            "stopping_criteria": StoppingCriteriaList([_Stop(cancel, watch, sink)]),
            "pad_token_id": self._pad_id(),
            "eos_token_id": sorted(self.eos_ids),
        }
        if recorder is not None:
            kwargs["logits_processor"] = LogitsProcessorList([recorder])
        if sampling.temperature > 0:
            kwargs |= {"do_sample": True, "temperature": sampling.temperature,
                       "top_p": sampling.top_p, "top_k": 0}
        else:
            kwargs |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if self.draft is not None:
            kwargs["assistant_model"] = self.draft
        input_ids = torch.tensor([prompt_ids], device=self.device)
        with self._alone(), torch.inference_mode(), self._seeded(sampling.seed):
            if not cancel.is_set():  # a client gone while this waited for its turn
                self.model.generate(
                    input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs
                )
        generation = self._finish(prompt_ids, list(sink.ids), sampling, watch,
                                  cancelled=cancel.is_set())
        if recorder is not None and sampling.top_logprobs is not None:
            # The end-of-sequence step is reported only when it is the only one: a first
            # token that ends the answer still shows its rivals (the judge reads them).
            kept = max(len(generation.completion_ids), min(1, len(sink.ids)))
            generation.logprobs = _logprobs(recorder.steps, sink.ids, kept,
                                            sampling.top_logprobs)
        return generation

    def _finish(self, prompt_ids: list[int], ids: list[int], sampling: Sampling,
                watch: StopWatch, *, cancelled: bool) -> Generation:
        """Trim the end-of-sequence token and the stop sequence; name the finish reason."""
        if cancelled:
            return Generation(len(prompt_ids), ids, "cancelled", cancelled=True)
        if watch.hit(ids):
            kept = ids[:-1] if ids and ids[-1] in self.eos_ids else ids
            return Generation(len(prompt_ids), kept, "stop", text=watch.cut(ids))
        if ids and ids[-1] in self.eos_ids:
            return Generation(len(prompt_ids), ids[:-1], "stop")
        reason = "length" if len(ids) >= sampling.max_new_tokens else "stop"
        return Generation(len(prompt_ids), ids, reason)

    def _generate_split(self, prompt_ids: list[int], sampling: Sampling, sink: _TokenSink,
                        cancel: threading.Event, watch: StopWatch) -> Generation:
        def emit(token: int) -> None:
            sink.ids.append(token)
            sink._on_token(token)

        with self._alone():
            ids = generate_disaggregated(
                self.prefill_model, self.model, prompt_ids,
                max_new_tokens=sampling.max_new_tokens, eos_token_id=min(self.eos_ids),
                temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed,
                on_token=emit, cancel=cancel, stop_check=watch.hit)
        return self._finish(prompt_ids, ids, sampling, watch, cancelled=cancel.is_set())

    def prefill_remote(self, prompt_ids: list[int], sampling: Sampling,
                       store: KVStore) -> tuple[Generation, HeldKV | None]:
        """Prefill for a decode elsewhere (blocking): the first token, and the held prompt KV.

        None for a one-token prompt: there is nothing to hold, the decode side runs it itself.
        Raises `KVFull` when the store is at its bound.
        """
        watch = StopWatch(self.decode, sampling.stop)
        model = self.prefill_model if self.prefill_model is not None else self.model
        with self._alone(), self._seeded(sampling.seed):
            layers, logits = prefill_layers(model, prompt_ids)
            token = pick_token(logits, sampling.temperature, sampling.top_p, None)
            entry = store.put(prompt_ids[:-1], layers) if len(prompt_ids) > 1 else None
        one = dataclasses.replace(sampling, max_new_tokens=1)
        return self._finish(prompt_ids, [token], one, watch, cancelled=False), entry

    async def run_pulled(self, prompt_ids: list[int], sampling: Sampling,
                         layers: list[tuple[Any, Any]], *,
                         on_token: Callable[[int], None] = lambda _id: None) -> Generation:
        """Decode from a pulled prompt cache (one at a time, like the other old-GPU paths)."""
        loop = asyncio.get_running_loop()
        cancel = threading.Event()

        def from_thread(token: int) -> None:
            loop.call_soon_threadsafe(on_token, token)

        def work() -> Generation:
            watch = StopWatch(self.decode, sampling.stop)
            with self._alone(), self._seeded(sampling.seed):
                ids = [] if cancel.is_set() else decode_pulled(
                    self.model, layers, prompt_ids[-1], max_new_tokens=sampling.max_new_tokens,
                    eos_ids=self.eos_ids, temperature=sampling.temperature,
                    top_p=sampling.top_p, seed=sampling.seed, on_token=from_thread,
                    cancel=cancel, stop_check=watch.hit)
            return self._finish(prompt_ids, ids, sampling, watch, cancelled=cancel.is_set())

        job = asyncio.ensure_future(asyncio.to_thread(work))
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            cancel.set()
            with contextlib.suppress(Exception):
                await job
            raise

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Mean-pooled last hidden states (one vector per text) and the input token count."""
        vectors: list[list[float]] = []
        tokens = 0
        with self._alone(), torch.inference_mode():
            for text in texts:
                ids = self.text_prompt(text) or [min(self.eos_ids)]
                tokens += len(ids)
                output = self.model(torch.tensor([ids], device=self.device),
                                    output_hidden_states=True)
                pooled = output.hidden_states[-1][0].mean(dim=0)
                vectors.append([float(v) for v in pooled.float().cpu().tolist()])
        return vectors, tokens


def _logprobs(steps: list[torch.Tensor], ids: list[int], kept: int,
              top: int) -> list[TokenLogprob]:
    entries: list[TokenLogprob] = []
    for step, token in zip(steps[:kept], ids[:kept], strict=False):
        values, index = torch.topk(step, top) if top > 0 else (step[:0], step[:0].long())
        chosen = float(step[token])
        entries.append(TokenLogprob(int(token), chosen if math.isfinite(chosen) else -9999.0,
                                    tuple((int(i), float(v)) for v, i in
                                          zip(values.tolist(), index.tolist(), strict=True))))
    return entries


def _served_name(model: str) -> str:
    name = model.rstrip("/").split("/")[-1]
    return name[:-5] if name.endswith(".gguf") else name


def _context_limit(model: Any, tokenizer: Any) -> int:
    """Tokens the model attends over (prompt + answer)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
        else model.config
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return int(limit) if isinstance(limit, int) and 0 < limit < 10**7 else 2048


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Every id that ends an answer: the generation config's, the model's and the tokenizer's."""
    found: set[int] = set()
    for value in (getattr(model.generation_config, "eos_token_id", None),
                  getattr(model.config, "eos_token_id", None), tokenizer.eos_token_id):
        if isinstance(value, int):
            found.add(value)
        elif isinstance(value, list | tuple):
            found.update(int(v) for v in value)
    return frozenset(found or {0})
