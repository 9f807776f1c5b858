"""Upstream down, failing, slow or dropping; client disconnects; full pools."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from proxy.fakes.upstream import Behaviour
from tests.conftest import MASTER_KEY, Fake, RunningProxy, fake_pool
from tests.support.ledger import wait_rows
from tests.support.postgres import free_port

MESSAGES = [{"role": "user", "content": "hello"}]


def test_5xx_before_first_byte_is_retried_on_another_backend(start_proxy, start_fake,
                                                             pg_url: str) -> None:
    broken, healthy = start_fake(), start_fake()
    broken.app.script(default=Behaviour(status=503))
    proxy = start_proxy([fake_pool(broken, healthy)], pg_url)
    client = proxy.client()
    for _ in range(4):  # round-robin starts on each backend in turn
        assert client.chat.completions.create(model="fake-model", messages=MESSAGES).choices
    rows = wait_rows(pg_url, 4)
    assert all(r["status"] == "ok" and r["backend_url"] == healthy.url for r in rows)
    assert sorted(r["retries"] for r in rows) == [0, 0, 1, 1]
    assert broken.app.stats.requests == 2


def test_streams_are_retried_before_the_first_byte(start_proxy, start_fake, pg_url) -> None:
    broken, healthy = start_fake(), start_fake()
    broken.app.script(default=Behaviour(status=500))
    proxy = start_proxy([fake_pool(broken, healthy)], pg_url)
    for _ in range(2):
        chunks = list(proxy.client().chat.completions.create(
            model="fake-model", messages=MESSAGES, stream=True))
        assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("tok0")
    assert {r["status"] for r in wait_rows(pg_url, 2)} == {"ok"}


def test_every_backend_down_gives_502_in_openai_format(start_proxy, pg_url: str) -> None:
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    pool = fake_pool(name="dead", base_urls=dead)
    proxy = start_proxy([pool], pg_url)
    with pytest.raises(openai.APIStatusError) as caught:
        proxy.client().chat.completions.create(model="fake-model", messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "upstream_error"  # type: ignore[index]
    assert caught.value.body["code"] == "upstream_unavailable"  # type: ignore[index]
    (row,) = wait_rows(pg_url, 1)
    assert row["status"] == "upstream_error" and row["http_status"] == 502
    assert row["retries"] == 2 and row["error_type"] == "upstream_unavailable"


def test_timeout_before_first_byte_gives_504(start_proxy, fake: Fake, pg_url: str) -> None:
    fake.app.script(default=Behaviour(delay_s=3))
    proxy = start_proxy([fake_pool(fake, read_timeout_s=0.3)], pg_url, retry_max_attempts=2)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        proxy.client().chat.completions.create(model="fake-model", messages=MESSAGES)
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 2.5
    (row,) = wait_rows(pg_url, 1)
    assert row["status"] == "timeout" and row["http_status"] == 504 and row["retries"] == 1


def test_upstream_4xx_passes_through_unchanged(proxy: RunningProxy, fake: Fake) -> None:
    fake.app.script(Behaviour(status=400, error_message="context length exceeded"))
    with pytest.raises(openai.BadRequestError) as caught:
        proxy.client().chat.completions.create(model="fake-model", messages=MESSAGES)
    assert caught.value.body["message"] == "context length exceeded"  # type: ignore[index]
    assert fake.app.stats.requests == 1  # a client error is not retried
    (row,) = wait_rows(proxy.database_url, 1)
    assert row["status"] == "upstream_error" and row["http_status"] == 400


def test_drop_after_first_byte_is_not_retried(proxy: RunningProxy, fake: Fake) -> None:
    fake.app.script(Behaviour(drop_after_chunks=3, tokens=10))
    received: list[str] = []
    with pytest.raises(openai.APIError):
        for chunk in proxy.client().chat.completions.create(
            model="fake-model", messages=MESSAGES, stream=True
        ):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "tok0 tok1"
    assert fake.app.stats.requests == 1
    (row,) = wait_rows(proxy.database_url, 1)
    assert row["status"] == "upstream_error" and row["error_type"] == "stream_interrupted"
    assert row["retries"] == 0 and row["completion_tokens"] == 2


def test_client_disconnect_mid_stream_cancels_upstream_within_1s(proxy: RunningProxy,
                                                                 fake: Fake) -> None:
    fake.app.script(Behaviour(tokens=100, chunk_delay_s=0.2))
    body = {"model": "fake-model", "messages": MESSAGES, "stream": True}
    headers = {"authorization": f"Bearer {MASTER_KEY}"}
    with httpx.Client(timeout=10) as client, client.stream(
        "POST", proxy.url + "/chat/completions", json=body, headers=headers
    ) as response:
        lines = response.iter_lines()
        seen = [line for line, _ in zip(lines, range(6), strict=False) if line]
        left_at = time.monotonic()
    assert len(seen) >= 2
    _wait(lambda: fake.app.stats.cancelled == 1, 2)
    assert fake.app.stats.cancelled_at[0] - left_at < 1.0
    (row,) = wait_rows(proxy.database_url, 1)
    assert row["status"] == "client_disconnect"
    assert 1 <= row["completion_tokens"] < 100 and row["usage_estimated"] is True


def test_client_disconnect_while_waiting_cancels_upstream(proxy: RunningProxy, fake: Fake) -> None:
    fake.app.script(Behaviour(delay_s=10))
    client = proxy.client(timeout=0.5)
    left_at = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="fake-model", messages=MESSAGES)
    _wait(lambda: fake.app.stats.cancelled == 1, 2)
    assert fake.app.stats.cancelled_at[0] - left_at < 1.5  # 0.5 s client timeout + < 1 s
    (row,) = wait_rows(proxy.database_url, 1)
    assert row["status"] == "client_disconnect" and row["http_status"] == 499


def test_full_pool_answers_429_with_retry_after(start_proxy, fake: Fake, pg_url: str) -> None:
    fake.app.script(Behaviour(delay_s=1.0))
    proxy = start_proxy([fake_pool(fake, max_concurrency=1, max_queue=0)], pg_url)
    holder = threading.Thread(target=lambda: proxy.client().chat.completions.create(
        model="fake-model", messages=MESSAGES))
    holder.start()
    _wait(lambda: fake.app.stats.active == 1, 2)
    with pytest.raises(openai.RateLimitError) as caught:
        proxy.client().chat.completions.create(model="fake-model", messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "1"
    holder.join()
    statuses = sorted(r["http_status"] for r in wait_rows(pg_url, 2))
    assert statuses == [200, 429]


def _wait(condition, timeout_s: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_upstream_rate_limit_everywhere_is_a_429(start_proxy, start_fake, pg_url) -> None:
    limited = [start_fake(), start_fake()]
    for fake in limited:
        fake.app.script(default=Behaviour(status=429, error_message="slow down"))
    proxy = start_proxy([fake_pool(*limited)], pg_url, retry_max_attempts=2)
    with pytest.raises(openai.RateLimitError) as caught:
        proxy.client().chat.completions.create(model="fake-model", messages=MESSAGES)
    assert caught.value.code == "upstream_rate_limited"
    assert caught.value.response.headers["retry-after"] == "1"
    assert sum(f.app.stats.requests for f in limited) == 2  # the other backend was tried
    (row,) = wait_rows(pg_url, 1)
    assert row["status"] == "upstream_error" and row["http_status"] == 429
