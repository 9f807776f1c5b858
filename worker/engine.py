"""Engine: one Hugging Face causal LM on cuda / mps / cpu, generating with cancellation."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer

from worker.decoding import generate_disaggregated

log = logging.getLogger(__name__)


def _load(model: str, device: str) -> Any:
    dtype = torch.float32 if device == "cpu" else torch.float16
    loaded = AutoModelForCausalLM.from_pretrained(model, dtype=dtype).to(device)
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


@dataclasses.dataclass(slots=True)
class Generation:
    """What one generation produced."""

    prompt_tokens: int
    completion_ids: list[int]
    finish_reason: str
    cancelled: bool = False


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


class _Cancelled(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return torch.full((input_ids.shape[0],), self._event.is_set(), dtype=torch.bool,
                          device=input_ids.device)


class Engine:
    """Loads a model by Hugging Face id or local path; one generation at a time."""

    def __init__(self, model: str, *, device: str = "auto", served_name: str | None = None,
                 draft_model: str | None = None, draft_device: str | None = None,
                 prefill_device: str | None = None):
        if draft_model and prefill_device:
            raise ValueError("choose speculative decoding or a prefill/decode split, not both")
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
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
        self.served_name = served_name or model.rstrip("/").split("/")[-1]
        self._lock = threading.Lock()
        log.info("loaded %s on %s", model, self.device)

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
            return [int(i) for i in prompt]
        return [int(i) for i in self.tokenizer(prompt)["input_ids"]]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids."""
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def generate(
        self,
        prompt_ids: list[int],
        sampling: Sampling,
        *,
        on_token: Callable[[int], None] = lambda _id: None,
        cancel: threading.Event | None = None,
    ) -> Generation:
        """Generate (blocking; call from a thread); `cancel` stops it within one token."""
        cancel = cancel or threading.Event()
        sink = _TokenSink(on_token)
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "streamer": sink,
            "stopping_criteria": StoppingCriteriaList([_Cancelled(cancel)]),
            "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
        }
        if sampling.temperature > 0:
            kwargs |= {"do_sample": True, "temperature": sampling.temperature,
                       "top_p": sampling.top_p, "top_k": 0}
        else:
            kwargs |= {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        if sampling.stop:
            kwargs |= {"stop_strings": list(sampling.stop), "tokenizer": self.tokenizer}
        if self.prefill_model is not None:
            return self._generate_split(prompt_ids, sampling, sink, cancel)
        if self.draft is not None:
            kwargs["assistant_model"] = self.draft
        input_ids = torch.tensor([prompt_ids], device=self.device)
        with self._lock, torch.inference_mode():
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            self.model.generate(
                input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs
            )
        ids = sink.ids
        eos = self.tokenizer.eos_token_id
        if cancel.is_set():
            reason = "cancelled"
        elif ids and ids[-1] == eos:
            ids = ids[:-1]
            reason = "stop"
        elif len(ids) >= sampling.max_new_tokens:
            reason = "length"
        else:
            reason = "stop"
        return Generation(len(prompt_ids), ids, reason, cancelled=cancel.is_set())

    def _generate_split(self, prompt_ids: list[int], sampling: Sampling, sink: _TokenSink,
                        cancel: threading.Event) -> Generation:
        eos = self.tokenizer.eos_token_id

        def stopped(ids: list[int]) -> bool:
            return bool(sampling.stop) and any(self.decode(ids).endswith(s) for s in sampling.stop)

        def emit(token: int) -> None:
            sink.ids.append(token)
            sink._on_token(token)

        with self._lock:
            ids = generate_disaggregated(
                self.prefill_model, self.model, prompt_ids,
                max_new_tokens=sampling.max_new_tokens, eos_token_id=eos,
                temperature=sampling.temperature, top_p=sampling.top_p, seed=sampling.seed,
                on_token=emit, cancel=cancel, stop_check=stopped)
        if cancel.is_set():
            return Generation(len(prompt_ids), ids, "cancelled", cancelled=True)
        if ids and ids[-1] == eos:
            return Generation(len(prompt_ids), ids[:-1], "stop")
        reason = "length" if len(ids) >= sampling.max_new_tokens else "stop"
        return Generation(len(prompt_ids), ids, reason)

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Mean-pooled last hidden states (one vector per text) and the input token count."""
        vectors: list[list[float]] = []
        tokens = 0
        with self._lock, torch.inference_mode():
            for text in texts:
                ids = self.text_prompt(text) or [self.tokenizer.eos_token_id]
                tokens += len(ids)
                output = self.model(torch.tensor([ids], device=self.device),
                                    output_hidden_states=True)
                pooled = output.hidden_states[-1][0].mean(dim=0)
                vectors.append([float(v) for v in pooled.float().cpu().tolist()])
        return vectors, tokens
