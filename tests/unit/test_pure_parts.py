"""Retry backoff, body parsing, keys, admission, pool resolution, usage estimates."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from pydantic import SecretStr

from proxy.api.body import parse_body
from proxy.auth.keys import KeyRing, key_sha256, resolve_master_key
from proxy.backends.base import Backend, UpstreamRequest, UpstreamResponse
from proxy.errors import AuthenticationFailed, InvalidRequest, NotFound, Overloaded
from proxy.pools.admission import Admission
from proxy.pools.config import PoolConfig
from proxy.pools.registry import Pool, PoolRegistry
from proxy.protocol.chat import ChatCompletionRequest
from proxy.serving.retry import RetryPolicy
from proxy.serving.usage_estimate import tokens_from_chars


def test_backoff_is_full_jitter_and_capped() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_base_s=0.1, backoff_max_s=0.3)
    rng = random.Random(0)
    for attempt, ceiling in [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.3)]:
        waits = [policy.backoff_s(attempt, rng) for _ in range(200)]
        assert min(waits) >= 0 and max(waits) <= ceiling
        assert max(waits) > ceiling * 0.8  # it really spreads


def test_parse_body_keeps_unknown_fields_and_serialises_only_what_was_sent() -> None:
    body = b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "new": [1]}'
    request = parse_body(ChatCompletionRequest, body)
    assert request.model_extra == {"new": [1]}
    renamed = request.model_copy(update={"model": "upstream"})
    assert renamed.to_json_bytes() == (
        b'{"model":"upstream","messages":[{"role":"user","content":"x"}],"new":[1]}')


def test_parse_body_messages() -> None:
    with pytest.raises(InvalidRequest, match="Missing required parameter: 'messages'"):
        parse_body(ChatCompletionRequest, b'{"model": "m"}')
    with pytest.raises(InvalidRequest, match="could not parse the JSON"):
        parse_body(ChatCompletionRequest, b"{")


def test_keyring() -> None:
    ring = KeyRing(SecretStr("sk-master"), {key_sha256("sk-virtual"): "key_1"})
    assert ring.authenticate("Bearer sk-master") == "master"
    assert ring.authenticate("bearer  sk-virtual ") == "key_1"
    for header in [None, "", "Bearer", "Token sk-master", "Bearer sk-other"]:
        with pytest.raises(AuthenticationFailed):
            ring.authenticate(header)
    with pytest.raises(AuthenticationFailed):
        KeyRing(None).authenticate("Bearer ")


def test_master_key_file_is_made_once(tmp_path: Path) -> None:
    path = tmp_path / "var" / "master-key"
    assert resolve_master_key(None, path, create=False) is None
    first = resolve_master_key(None, path, create=True)
    second = resolve_master_key(None, path, create=True)
    assert first is not None and second is not None
    assert first.get_secret_value() == second.get_secret_value()
    assert resolve_master_key(SecretStr("x"), path, create=True).get_secret_value() == "x"  # type: ignore[union-attr]


def test_admission_queues_then_refuses() -> None:
    async def scenario() -> None:
        admission = Admission(max_concurrency=1, max_queue=1)
        await admission.acquire("p")
        waiter = asyncio.ensure_future(admission.acquire("p"))
        await asyncio.sleep(0)
        assert admission.waiting == 1
        with pytest.raises(Overloaded) as caught:
            await admission.acquire("p")
        assert caught.value.headers == {"retry-after": "1"}
        admission.release()
        await waiter
        assert admission.in_flight == 1 and admission.waiting == 0
        waiter2 = asyncio.ensure_future(admission.acquire("p"))
        await asyncio.sleep(0)
        waiter2.cancel()  # a cancelled waiter leaves no trace
        await asyncio.gather(waiter2, return_exceptions=True)
        assert admission.waiting == 0
        admission.release()
        assert admission.in_flight == 0

    asyncio.run(scenario())


class _NullBackend(Backend):
    kind = "null"
    url = "null://"

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        raise NotImplementedError


def _pool(name: str, models: list[str], **extra: object) -> Pool:
    config = PoolConfig.model_validate({"name": name, "base_urls": ["http://x/v1"],
                                        "models": models, **extra})
    return Pool(config, [_NullBackend()])


def test_registry_resolution_and_least_loaded_choice() -> None:
    a, b = _pool("a", ["m"]), _pool("b", ["m", "n"])
    registry = PoolRegistry([a, b])
    a.admission.in_flight = 5
    assert registry.resolve("m", "chat").pool is b
    assert registry.resolve("n", "chat").upstream_model == "n"
    with pytest.raises(NotFound):
        registry.resolve("zzz", "chat")
    with pytest.raises(InvalidRequest, match="embeddings"):
        registry.resolve("m", "embeddings")
    wildcard = _pool("w", [])
    assert PoolRegistry([wildcard]).resolve("anything", "chat").upstream_model == "anything"
    assert PoolRegistry([wildcard]).model_ids() == []


def test_attempt_order_round_robins_over_backends() -> None:
    config = PoolConfig(name="p", base_urls=["http://a/v1", "http://b/v1"], models=["m"])  # type: ignore[list-item]
    one, two = _NullBackend(), _NullBackend()
    pool = Pool(config, [one, two])
    assert [backend for backend, _ in pool.attempt_order(3)] == [one, two, one]
    assert [backend for backend, _ in pool.attempt_order(2)] == [two, one]
    for _ in range(5):  # the first backend keeps failing: its breaker opens
        pool.breakers[0].record_failure()
    order = [backend for backend, _ in pool.attempt_order(3)]
    assert order and all(backend is two for backend in order)  # the open one is skipped
    assert pool.usable


def test_token_estimate() -> None:
    assert tokens_from_chars(0) == 0
    assert tokens_from_chars(1) == 1
    assert tokens_from_chars(400) == 100
