"""Continuous batching with transformers' own manager (`init_continuous_batching`).

Every concurrent request runs in one batch that requests join and leave token by token, over
a paged KV cache. transformers' manager either samples or takes the argmax for its whole
batch, so the worker keeps two: one for greedy requests (temperature 0) and one that samples
with each request's own temperature and top-p. Both share the model's weights; each has its
own cache of `kv_cache_tokens`. Requests that must run alone (a seed, log-probabilities, the
old-GPU paths) pause both batches for their turn, which keeps the batches' requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from transformers import GenerationConfig
from transformers.generation.configuration_utils import ContinuousBatchingConfig

if TYPE_CHECKING:
    from worker.engine import Sampling

log = logging.getLogger(__name__)

PAGE_TOKENS = 64


class BatchFailed(RuntimeError):
    """The batch could not take or finish a request."""


class Batcher:
    """A greedy and a sampling `ContinuousBatchingManager` over one model."""

    def __init__(self, model: Any, *, eos_ids: list[int], pad_id: int, kv_cache_tokens: int,
                 max_batch_tokens: int) -> None:
        self.kv_cache_tokens = kv_cache_tokens
        blocks = max(2, math.ceil(kv_cache_tokens / PAGE_TOKENS))
        common = {"eos_token_id": eos_ids, "pad_token_id": pad_id, "max_new_tokens": 16}
        greedy = GenerationConfig(do_sample=False, **common)
        # Defaults other than 1.0 make transformers build the per-request warpers; every
        # request passes its own temperature and top-p.
        sampled = GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=0, **common)
        self._managers: dict[bool, Any] = {}
        self.active = 0  # requests in a batch now (the event loop's count)
        self.peak_active = 0
        with torch.inference_mode():
            for is_greedy, config in ((True, greedy), (False, sampled)):
                manager = model.init_continuous_batching(
                    generation_config=config,
                    continuous_batching_config=ContinuousBatchingConfig(
                        page_size=PAGE_TOKENS, num_blocks=blocks,
                        max_batch_tokens=max_batch_tokens, per_request_processors=True,
                        allow_block_sharing=False),
                )
                manager.start()
                self._managers[is_greedy] = manager
        # The batch threads are not daemons: stop them when the interpreter exits (before it
        # joins its threads), even if nobody called close().
        threading._register_atexit(self.close)  # type: ignore[attr-defined]

    def close(self) -> None:
        """Stop both batching threads (their unfinished requests fail); idempotent."""
        managers, self._managers = self._managers, {}
        for manager in managers.values():
            with contextlib.suppress(Exception):
                manager.stop(block=True, timeout=10, hard_stop=True)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Both batches paused (nothing lost): the caller may run the model alone."""
        with contextlib.ExitStack() as stack:
            for manager in self._managers.values():
                if manager.is_running():
                    stack.enter_context(manager.pause())
            yield

    async def run(self, prompt_ids: list[int], sampling: Sampling,
                  on_token: Callable[[int], None],
                  stopped: Callable[[list[int]], bool]) -> tuple[list[int], bool]:
        """Generated ids (end-of-sequence included) as the batch produces them.

        Stops early when `stopped` says so. Cancelling the caller's task drops the request
        from the batch at the next step.
        """
        greedy = sampling.temperature <= 0
        manager = self._managers.get(greedy)
        if manager is None:
            raise BatchFailed("the worker is shutting down")
        request_id = uuid.uuid4().hex
        outputs: asyncio.Queue[Any] = asyncio.Queue()
        manager.register_result_handler(request_id, outputs.put_nowait)
        warpers = {} if greedy else {"temperature": float(sampling.temperature),
                                     "top_p": float(sampling.top_p)}
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        try:
            added = manager.add_request(list(prompt_ids), request_id=request_id,
                                        max_new_tokens=sampling.max_new_tokens, streaming=True,
                                        **warpers)
            if added is None:
                raise BatchFailed("the batch is not accepting requests")
            ids: list[int] = []
            while True:
                output = await outputs.get()
                if output.error:
                    raise BatchFailed(str(output.error))
                for token in output.generated_tokens[len(ids):]:
                    ids.append(int(token))
                    on_token(int(token))
                if stopped(ids):
                    manager.cancel_request(request_id)
                    return ids, False
                if output.is_finished():
                    return ids, False
        except BaseException:
            manager.cancel_request(request_id)  # a disconnect or an error: free its slot now
            raise
        finally:
            self.active -= 1
            with manager.output_router._lock:  # finished requests drop their own handler
                manager.output_router.result_handlers.pop(request_id, None)
