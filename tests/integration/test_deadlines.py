"""A request's deadline bounds it across every attempt; a client may shorten it."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import openai
import pytest

from proxy.fakes.upstream import Behaviour
from tests.conftest import MASTER_KEY, Fake, RunningProxy, fake_pool
from tests.support.ledger import wait_rows

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture
def hung(start_proxy: Callable[..., RunningProxy], fake: Fake, pg_url: str) -> RunningProxy:
    """Issue #14's setup: read_timeout_s=120, 3 attempts, an upstream that never answers."""
    fake.app.default = Behaviour(delay_s=60)
    return start_proxy([fake_pool(fake, read_timeout_s=120.0)], pg_url, retry_max_attempts=3,
                       request_timeout_s=2.0, stream_first_byte_timeout_s=1.0)


@pytest.mark.postgres
def test_a_hung_upstream_costs_the_deadline_not_attempts_times_read_timeout(
        hung: RunningProxy, fake: Fake) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        hung.client(timeout=30).chat.completions.create(model="fake-model", messages=MESSAGES)
    assert 1.9 < time.monotonic() - started < 3.5  # was 3 x 120 s
    assert caught.value.status_code == 504
    assert caught.value.code == "total_deadline_exceeded"
    assert caught.value.type == "timeout_error"
    (row,) = wait_rows(hung.database_url, 1)
    assert (row["status"], row["http_status"], row["error_type"]) == (
        "timeout", 504, "total_deadline_exceeded")
    time.sleep(0.3)
    assert fake.app.stats.cancelled == fake.app.stats.requests == 1  # the upstream was let go


@pytest.mark.postgres
def test_a_client_shortens_its_deadline_with_a_header(hung: RunningProxy) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        hung.client(timeout=30).chat.completions.create(
            model="fake-model", messages=MESSAGES, extra_headers={"X-Sprout-Timeout-S": "0.5"})
    assert 0.45 < time.monotonic() - started < 1.5
    assert caught.value.status_code == 504 and "X-Sprout-Timeout-S" in caught.value.message
    # A longer one than the proxy's is held to the proxy's.
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError):
        hung.client(timeout=30).chat.completions.create(
            model="fake-model", messages=MESSAGES, extra_headers={"X-Sprout-Timeout-S": "600"})
    assert time.monotonic() - started < 3.5


@pytest.mark.postgres
def test_a_stream_has_a_first_byte_deadline_only(hung: RunningProxy, fake: Fake) -> None:
    client = hung.client(timeout=30)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    assert 0.9 < time.monotonic() - started < 2.5
    assert caught.value.status_code == 504
    assert caught.value.code == "first_byte_deadline_exceeded"
    # A stream that starts in time may run longer than the deadline.
    fake.app.script(Behaviour(tokens=8, chunk_delay_s=0.3))
    chunks = list(client.chat.completions.create(model="fake-model", messages=MESSAGES,
                                                 stream=True))
    assert time.monotonic() - started > 3 and chunks[-1].choices[0].finish_reason == "length"
    first, second = wait_rows(hung.database_url, 2)
    assert first["error_type"] == "first_byte_deadline_exceeded" and first["status"] == "timeout"
    assert second["status"] == "ok"


@pytest.mark.postgres
@pytest.mark.parametrize("value", ["soon", "-1", "0", "nan", "inf"])
def test_a_bad_timeout_header_is_a_400(proxy: RunningProxy, value: str) -> None:
    response = httpx.post(proxy.url + "/chat/completions",
                          headers={"authorization": f"Bearer {MASTER_KEY}",
                                   "x-sprout-timeout-s": value},
                          json={"model": "fake-model", "messages": MESSAGES})
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_timeout", "X-Sprout-Timeout-S")
    (row,) = wait_rows(proxy.database_url, 1)
    assert (row["status"], row["http_status"]) == ("rejected", 400)
