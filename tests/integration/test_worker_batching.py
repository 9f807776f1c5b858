"""The worker's continuous batching: concurrent requests share one batch, answers stay exact.

The model here is the tiny demo model (random weights, meaningless text; a larger
initialisation so greedy output varies): the batching, cancellation and usage mechanics are
transformers' real ones. The real-model checks are in tests/e2e/test_real_model.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.device import TEST_DEVICE
from tests.support.postgres import free_port
from tests.support.servers import ChildProcess
from worker.batching import BatchFailed
from worker.demo_model import build_demo_model
from worker.engine import Engine, Sampling

QUESTIONS = ["What is the capital of France?", "Why is the sky blue?", "Name three fruits.",
             "Who wrote Hamlet?"]


@pytest.fixture(scope="module")
def varied_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_model(tmp_path_factory.mktemp("batching") / "m", seed=3,
                            initializer_range=1.0)


@pytest.fixture(scope="module")
def engine(varied_model: Path) -> Iterator[Engine]:
    engine = Engine(str(varied_model), device=TEST_DEVICE)
    yield engine
    engine.close()


def _prompts(engine: Engine) -> list[list[int]]:
    return [engine.chat_prompt([{"role": "user", "content": q}]) for q in QUESTIONS]


def test_batched_greedy_answers_equal_one_at_a_time(engine: Engine) -> None:
    assert engine.batching and engine.batcher is not None
    greedy = Sampling(max_new_tokens=20, temperature=0)
    alone = [engine.generate(p, greedy).completion_ids for p in _prompts(engine)]
    assert len({tuple(a) for a in alone}) == len(alone)  # different answers: equality matters

    async def together() -> list[list[int]]:
        done = await asyncio.gather(*(engine.run(p, greedy) for p in _prompts(engine)))
        return [d.completion_ids for d in done]

    assert asyncio.run(together()) == alone
    assert engine.batcher.peak_active >= 2  # they ran in one batch
    assert engine.batcher.active == 0


def test_sampling_stops_and_cancellation_in_the_batch(engine: Engine) -> None:
    prompts = _prompts(engine)

    async def scenario() -> None:
        sampled = await asyncio.gather(*(engine.run(p, Sampling(max_new_tokens=12,
                                                                temperature=0.9, top_p=0.95))
                                         for p in prompts))
        assert all(len(s.completion_ids) == 12 and s.finish_reason == "length"
                   for s in sampled)

        full = await engine.run(prompts[0], Sampling(max_new_tokens=20, temperature=0))
        text = engine.decode(full.completion_ids)
        stop = text[len(text) // 2:len(text) // 2 + 2]
        cut = await engine.run(prompts[0], Sampling(max_new_tokens=20, temperature=0,
                                                    stop=(stop,)))
        assert cut.finish_reason == "stop" and cut.text == text[:text.index(stop)]

        seen: list[int] = []
        three = asyncio.Event()

        def count(token: int) -> None:
            seen.append(token)
            if len(seen) == 3:
                three.set()

        long = asyncio.ensure_future(engine.run(prompts[1], Sampling(
            max_new_tokens=400, temperature=0), on_token=count))
        await three.wait()
        long.cancel()
        with pytest.raises(asyncio.CancelledError):
            await long
        await asyncio.sleep(0.5)
        assert engine.batcher is not None and engine.batcher.active == 0
        scheduler = engine.batcher._managers[True].batch_processor.scheduler  # white box:
        assert not scheduler.active_requests and not scheduler.waiting_requests  # it stopped

    asyncio.run(scenario())


def test_seeded_and_logprob_requests_run_alone_beside_the_batch(engine: Engine) -> None:
    prompt = _prompts(engine)[0]
    seeded = Sampling(max_new_tokens=10, temperature=0.9, seed=11)
    assert not engine.uses_batching(seeded)

    async def scenario() -> None:
        batch = asyncio.ensure_future(engine.run(prompt, Sampling(max_new_tokens=30,
                                                                  temperature=0)))
        first, second = await engine.run(prompt, seeded), await engine.run(prompt, seeded)
        assert first.completion_ids == second.completion_ids
        scored = await engine.run(prompt, Sampling(max_new_tokens=2, temperature=0,
                                                   top_logprobs=3))
        assert scored.logprobs is not None and len(scored.logprobs) == 2
        assert all(len(item.top) == 3 and item.top[0][1] >= item.logprob - 1e-4
                   for item in scored.logprobs)  # greedy: the chosen token is the top one
        assert len((await batch).completion_ids) == 30  # the paused batch lost nothing

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def batching_worker(varied_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    process = ChildProcess(
        ["-m", "worker", "--model", str(varied_model), "--served-name", "tiny-random",
         "--port", str(port), "--device", TEST_DEVICE,
         "--max-tokens-ceiling", "9", "--kv-cache-tokens", "1024",
         "--log-level", "warning"],
        f"http://127.0.0.1:{port}/health",
        log_path=tmp_path_factory.mktemp("bw") / "worker.log").start()
    yield f"http://127.0.0.1:{port}"
    process.stop()


def test_concurrent_sdk_streams_share_the_batch_with_exact_usage(batching_worker: str) -> None:
    client = openai.AsyncOpenAI(base_url=batching_worker + "/v1", api_key="unused")

    async def one(question: str) -> tuple[str, int]:
        stream = await client.chat.completions.create(
            model="tiny-random", messages=[{"role": "user", "content": question}],
            max_tokens=24, temperature=0, stream=True, stream_options={"include_usage": True})
        text, usage = "", 0
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage = chunk.usage.completion_tokens
        return text, usage

    async def all_of_them() -> list[tuple[str, int]]:
        return await asyncio.gather(*(one(q) for q in QUESTIONS))

    answers = asyncio.run(all_of_them())
    assert all(usage == 24 for _, usage in answers)
    health = httpx.get(batching_worker + "/health").json()
    assert health["batching"] is True and health["batch"]["peak"] >= 2
    assert health["batch"]["active"] == 0 and health["context_tokens"] == 1024
    plain = openai.OpenAI(base_url=batching_worker + "/v1", api_key="unused")
    again = plain.chat.completions.create(model="tiny-random", temperature=0, max_tokens=24,
                                          messages=[{"role": "user", "content": QUESTIONS[0]}])
    assert again.choices[0].message.content == answers[0][0]  # streamed = unstreamed


def test_no_silent_cap_and_clear_errors(batching_worker: str) -> None:
    client = openai.OpenAI(base_url=batching_worker + "/v1", api_key="unused")
    messages = [{"role": "user", "content": "Hi"}]
    unbounded = client.chat.completions.create(model="tiny-random", messages=messages)
    assert unbounded.choices[0].finish_reason in ("length", "stop")
    assert unbounded.usage is not None and unbounded.usage.completion_tokens <= 9
    if unbounded.choices[0].finish_reason == "length":
        assert unbounded.usage.completion_tokens == 9  # the documented ceiling, said so
    honoured = client.chat.completions.create(model="tiny-random", messages=messages,
                                              max_completion_tokens=30, temperature=0)
    assert honoured.usage is not None and honoured.usage.completion_tokens > 9

    def refused(**extra: object) -> openai.BadRequestError:
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="tiny-random", messages=messages,
                                           **extra)  # type: ignore[call-overload]
        return caught.value

    assert refused(max_tokens=5000).param == "max_tokens"  # the context is 1024
    assert "1024-token context" in refused(max_tokens=5000).message
    assert refused(n=2).param == "n"
    assert refused(logprobs=True, stream=True).param == "logprobs"
    assert refused(top_logprobs=3).param == "top_logprobs"
    assert refused(logprobs=True, top_logprobs=21).param == "top_logprobs"
    assert refused(stop=[1, 2]).param == "stop"
    scored = client.chat.completions.create(model="tiny-random", messages=messages,
                                            max_tokens=1, logprobs=True, top_logprobs=5)
    content = scored.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content is not None and len(content) == 1 and len(content[0].top_logprobs) == 5


def test_a_batch_whose_thread_died_is_replaced(engine: Engine) -> None:
    assert engine.batcher is not None
    prompt = _prompts(engine)[0]
    greedy = Sampling(max_new_tokens=5, temperature=0)

    async def scenario() -> None:
        # A token id past the vocabulary (the HTTP API refuses it with a 400; here it goes to
        # the batch directly) raises inside transformers' loop, which then stops for good.
        with pytest.raises(BatchFailed):
            await engine.batcher.run([10**6], greedy, lambda _t: None, lambda _ids: False)
        restarts = engine.batcher.restarts
        assert len((await engine.run(prompt, greedy)).completion_ids) == 5
        assert engine.batcher.restarts == restarts + 1 and engine.batcher.revive()

    asyncio.run(scenario())


def test_a_batch_marked_failed_before_its_thread_exits_is_replaced(engine: Engine) -> None:
    """CI: the request after a fatal error came while the dead batch's thread was still
    exiting; `is_running()` was true, `add_request` refused, and the client got a 503."""
    assert engine.batcher is not None
    prompt = _prompts(engine)[0]
    greedy = Sampling(max_new_tokens=5, temperature=0)

    async def scenario() -> None:
        assert engine.batcher is not None and engine.batcher.revive()
        dying = engine.batcher._managers[True]
        # transformers' own first step on a fatal error, held in place: the mark is set and
        # the thread has not exited yet.
        dying.background_thread_status.record_fatal_error(RuntimeError("held for the test"))
        assert dying.is_running()
        restarts = engine.batcher.restarts
        assert len((await engine.run(prompt, greedy)).completion_ids) == 5
        assert engine.batcher.restarts == restarts + 1
        assert engine.batcher._managers[True] is not dying and not dying.is_running()

    asyncio.run(scenario())


def test_bad_token_ids_and_seeds_over_http(batching_worker: str) -> None:
    client = openai.OpenAI(base_url=batching_worker + "/v1", api_key="unused")
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="tiny-random", prompt=[10**6], max_tokens=2)
    assert caught.value.param == "prompt" and "vocabulary" in caught.value.message
    ok = client.completions.create(model="tiny-random", prompt=[5, 6, 7], max_tokens=3)
    assert ok.usage is not None and ok.usage.completion_tokens == 3
    assert httpx.get(batching_worker + "/health").json()["batch"]["restarts"] == 0

    def sampled(seed: int) -> str:
        reply = client.chat.completions.create(
            model="tiny-random", messages=[{"role": "user", "content": "Hi"}], max_tokens=8,
            temperature=1.0, seed=seed)
        return reply.choices[0].message.content or ""

    assert sampled(5) == sampled(5)  # a seed is honoured exactly (run alone)
