"""Failover across pools and circuit breakers, with real scripted upstreams."""

from __future__ import annotations

import pytest

from proxy.fakes.upstream import Behaviour
from tests.conftest import fake_pool
from tests.support.ledger import wait_rows

MESSAGES = [{"role": "user", "content": "hello"}]


def test_failover_to_the_next_pool_and_breaker_opens(start_proxy, start_fake, pg_url) -> None:
    broken, healthy = start_fake(), start_fake()
    broken.app.script(default=Behaviour(status=503))
    proxy = start_proxy([fake_pool(broken, name="a", breaker_failures=2, breaker_cooldown_s=60),
                         fake_pool(healthy, name="b", max_concurrency=1)],
                        pg_url, retry_max_attempts=1, routing_policy="least_loaded")
    client = proxy.client()
    for _ in range(4):
        raw = client.chat.completions.with_raw_response.create(model="fake-model",
                                                               messages=MESSAGES)
        assert raw.parse().choices[0].message.content  # always answered
    rows = wait_rows(pg_url, 4)
    assert all(r["status"] == "ok" for r in rows)
    # Pool a (least loaded, tried first) fails twice, then its breaker opens and pool b is
    # chosen first: a sees exactly 2 requests; those two rows record the failover.
    assert broken.app.stats.requests == 2
    assert sorted(r["pool"] for r in rows) == ["b", "b", "b", "b"]
    assert sorted(r["retries"] for r in rows)[-2:] == [1, 1]


def test_stream_failover_and_all_pools_failing(start_proxy, start_fake, pg_url) -> None:
    import openai

    broken, healthy = start_fake(), start_fake()
    broken.app.script(default=Behaviour(status=500))
    proxy = start_proxy([fake_pool(broken, name="a"), fake_pool(healthy, name="b")], pg_url,
                        retry_max_attempts=1)
    chunks = list(proxy.client().chat.completions.create(model="fake-model", messages=MESSAGES,
                                                         stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("tok0")
    healthy.app.script(default=Behaviour(status=500))
    with pytest.raises(openai.APIStatusError) as caught:
        proxy.client().chat.completions.create(model="fake-model", messages=MESSAGES)
    assert caught.value.status_code == 502
    rows = wait_rows(pg_url, 2)
    assert rows[-1]["status"] == "upstream_error" and rows[-1]["retries"] >= 1
