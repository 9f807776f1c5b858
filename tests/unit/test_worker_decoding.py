"""Speculative decoding and the prefill/decode split give exactly plain greedy output.

The models are tiny, built here with random weights (a larger initialisation so that greedy
output varies); both "devices" are the CPU, which exercises the same KV-cache hand-over code.
"""

from __future__ import annotations

import threading

import pytest

from tests.support.device import TEST_DEVICE
from worker.demo_model import build_demo_model
from worker.engine import Engine, Sampling


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("decoding")
    main = build_demo_model(root / "main", seed=1, initializer_range=1.0)
    draft = build_demo_model(root / "draft", seed=2, hidden_size=32, layers=1,
                             initializer_range=1.0)
    return str(main), str(draft)


def _prompt(engine: Engine) -> list[int]:
    return engine.chat_prompt([{"role": "user", "content": "What is the capital of France?"}])


def test_speculative_and_split_equal_plain_greedy(models: tuple[str, str]) -> None:
    main, draft = models
    plain = Engine(main, device=TEST_DEVICE)
    greedy = Sampling(max_new_tokens=24, temperature=0)
    expected = plain.generate(_prompt(plain), greedy).completion_ids
    assert len(set(expected)) > 3  # varied output, so equality means something

    speculative = Engine(main, device=TEST_DEVICE, draft_model=draft, draft_device=TEST_DEVICE)
    assert speculative.decoding == "speculative"
    assert speculative.generate(_prompt(speculative), greedy).completion_ids == expected

    split = Engine(main, device=TEST_DEVICE, prefill_device=TEST_DEVICE)
    assert split.decoding == "disaggregated"
    streamed: list[int] = []
    result = split.generate(_prompt(split), greedy, on_token=streamed.append)
    assert result.completion_ids == expected and streamed == expected
    assert result.finish_reason == "length" and result.prompt_tokens == len(_prompt(split))


def test_split_sampling_is_seeded_and_cancellable(models: tuple[str, str]) -> None:
    split = Engine(models[0], device=TEST_DEVICE, prefill_device=TEST_DEVICE)
    sampling = Sampling(max_new_tokens=16, temperature=0.8, top_p=0.9, seed=7)
    first = split.generate(_prompt(split), sampling).completion_ids
    assert split.generate(_prompt(split), sampling).completion_ids == first

    cancel = threading.Event()
    seen: list[int] = []

    def stop_after_three(token: int) -> None:
        seen.append(token)
        if len(seen) == 3:
            cancel.set()

    cancelled = split.generate(_prompt(split), Sampling(max_new_tokens=50, temperature=0),
                               on_token=stop_after_three, cancel=cancel)
    assert cancelled.cancelled and len(cancelled.completion_ids) == 3


def test_both_techniques_at_once_is_refused(models: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="not both"):
        Engine(models[0], device=TEST_DEVICE, draft_model=models[1], prefill_device=TEST_DEVICE)
