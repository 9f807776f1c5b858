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

from proxy.errors import ProxyError

if TYPE_CHECKING:
    from worker.engine import Sampling

log = logging.getLogger(__name__)

PAGE_TOKENS = 64
WATCH_S = 1.0  # how often a waiting request checks that its batch still runs
RECANCEL_S = 2.0


class BatchFailed(ProxyError):
    """The batch could not take or finish a request (503 in OpenAI's envelope)."""

    status_code = 503
    error_type = "server_error"


class Batcher:
    """A greedy and a sampling `ContinuousBatchingManager` over one model.

    A batch whose thread died (a fatal error inside transformers' loop) is replaced by a fresh
    manager on the next request; the requests it held fail with a 503.
    """

    def __init__(self, model: Any, *, eos_ids: list[int], pad_id: int, kv_cache_tokens: int,
                 max_batch_tokens: int) -> None:
        self.kv_cache_tokens = kv_cache_tokens
        self._model = model
        blocks = max(2, math.ceil(kv_cache_tokens / PAGE_TOKENS))
        common = {"eos_token_id": eos_ids, "pad_token_id": pad_id, "max_new_tokens": 16}
        # Defaults other than 1.0 make transformers build the per-request warpers; every
        # sampled request passes its own temperature and top-p.
        self._configs = {
            True: GenerationConfig(do_sample=False, **common),
            False: GenerationConfig(do_sample=True, temperature=0.7, top_p=0.9, top_k=0,
                                    **common),
        }
        self._batch_config = {"page_size": PAGE_TOKENS, "num_blocks": blocks,
                              "max_batch_tokens": max_batch_tokens,
                              "per_request_processors": True, "allow_block_sharing": False}
        self._managers: dict[bool, Any] = {}
        self._closed = False
        self.active = 0  # requests in a batch now (the event loop's count)
        self.peak_active = 0
        self.restarts = 0
        for is_greedy in (True, False):
            self._managers[is_greedy] = self._start(is_greedy)
        # The batch threads are not daemons: stop them when the interpreter exits (before it
        # joins its threads), even if nobody called close().
        threading._register_atexit(self.close)  # type: ignore[attr-defined]

    def _start(self, greedy: bool) -> Any:
        with torch.inference_mode():
            manager = self._model.init_continuous_batching(
                generation_config=self._configs[greedy],
                continuous_batching_config=ContinuousBatchingConfig(**self._batch_config))
            manager.start()
        return manager

    def revive(self) -> bool:
        """Replace any batch whose thread died; whether both run now."""
        if self._closed:
            return False
        with contextlib.suppress(Exception):
            for greedy in (True, False):
                self._manager(greedy)
        return all(_healthy(m) for m in self._managers.values())

    def _manager(self, greedy: bool) -> Any:
        """The running manager for this kind of request, replacing one whose thread died."""
        if self._closed:
            raise BatchFailed("the worker is shutting down")
        manager = self._managers[greedy]
        if not _healthy(manager):
            error = manager.background_thread_status.fatal_error
            log.error("the %s batch stopped (%s); starting a new one",
                      "greedy" if greedy else "sampling", error)
            with contextlib.suppress(Exception):
                manager.stop(block=True, timeout=5, hard_stop=True)
            manager = self._managers[greedy] = self._start(greedy)
            self.restarts += 1
        return manager

    def close(self) -> None:
        """Stop both batching threads (their unfinished requests fail); idempotent."""
        self._closed = True
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
                  stopped: Callable[[list[int]], bool]) -> list[int]:
        """Generated ids (end-of-sequence included) as the batch produces them.

        Stops early when `stopped` says so. Cancelling the caller's task drops the request
        from the batch at the next step.
        """
        greedy = sampling.temperature <= 0
        manager = self._manager(greedy)
        request_id = uuid.uuid4().hex
        outputs: asyncio.Queue[Any] = asyncio.Queue()
        manager.register_result_handler(request_id, outputs.put_nowait)
        warpers = {} if greedy else {"temperature": float(sampling.temperature),
                                     "top_p": float(sampling.top_p)}
        self.active += 1
        self.peak_active = max(self.peak_active, self.active)
        finished = False
        try:
            added = manager.add_request(list(prompt_ids), request_id=request_id,
                                        max_new_tokens=sampling.max_new_tokens, streaming=True,
                                        **warpers)
            if added is None:
                raise BatchFailed("the batch is not accepting requests")
            ids: list[int] = []
            while True:
                try:
                    output = await asyncio.wait_for(outputs.get(), WATCH_S)
                except TimeoutError:
                    if not _healthy(manager):  # died with this request in it
                        raise BatchFailed("the batch stopped; retry the request") from None
                    continue
                if output.error:
                    finished = True
                    raise BatchFailed(f"the batch failed this request: {output.error}")
                for token in output.generated_tokens[len(ids):]:
                    ids.append(int(token))
                    on_token(int(token))
                if output.is_finished():
                    finished = True
                    return ids
                if stopped(ids):
                    return ids
        finally:
            self.active -= 1
            if not finished:  # a stop sequence, a disconnect or an error: free its slot now
                self._drop(manager, request_id)

    def _drop(self, manager: Any, request_id: str) -> None:
        """Cancel a request and swallow what the batch still sends for it.

        The step in flight may still deliver an output after the cancellation, and a cancel
        that lands just before the batch takes the request is lost (the manager applies
        cancellations to requests it holds); so the request is cancelled again a little
        later, and its handler discards outputs until then.
        """
        manager.cancel_request(request_id)
        with manager.output_router._lock:
            if request_id in manager.output_router.result_handlers:
                loop = manager.output_router.result_handlers[request_id][1]
                manager.output_router.result_handlers[request_id] = (_discard, loop)
        loop = asyncio.get_running_loop()
        loop.call_later(RECANCEL_S, manager.cancel_request, request_id)
        loop.call_later(2 * RECANCEL_S, _forget, manager, request_id)


def _healthy(manager: Any) -> bool:
    """Whether a batch runs and takes requests.

    A fatal error marks the batch before its thread has finished exiting: in that moment
    `is_running()` is still true but every `add_request` is refused, so both are checked.
    """
    return bool(manager.is_running()
                and manager.background_thread_status.can_accept_new_requests() is None)


def _discard(_output: Any) -> None:
    return None


def _forget(manager: Any, request_id: str) -> None:
    with manager.output_router._lock:
        manager.output_router.result_handlers.pop(request_id, None)
