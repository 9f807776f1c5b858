"""The proxy in front of the real torch worker (tiny demo model) and through a litellm pool."""

from __future__ import annotations

import pytest

from proxy.pools.config import PoolConfig
from tests.conftest import Fake
from tests.support.ledger import wait_rows

MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.mark.worker
def test_proxy_in_front_of_the_worker(start_proxy, worker: str, tmp_path) -> None:
    # The demo model has random weights: the text is meaningless, the mechanics are real.
    database_url = f"sqlite:///{tmp_path}/ledger.db"
    proxy = start_proxy([], database_url, upstream_url=worker)
    client = proxy.client()
    assert [m.id for m in client.models.list()] == ["sprout-demo-tiny"]

    reply = client.chat.completions.create(model="sprout-demo-tiny", messages=MESSAGES,
                                           max_tokens=6, temperature=0)
    assert reply.usage is not None and reply.usage.completion_tokens == 6
    assert reply.choices[0].finish_reason == "length"

    chunks = list(client.chat.completions.create(model="sprout-demo-tiny", messages=MESSAGES,
                                                 max_tokens=6, stream=True, temperature=0))
    assert all(chunk.choices for chunk in chunks)  # forced usage chunk stripped
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed == reply.choices[0].message.content  # greedy: same text both ways

    text = client.completions.create(model="sprout-demo-tiny", prompt="The grid", max_tokens=4)
    assert text.usage is not None and text.usage.completion_tokens == 4
    vectors = client.embeddings.create(model="sprout-demo-tiny", input=["a", "bc"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 64

    rows = wait_rows(database_url, 4)
    assert [r["endpoint"] for r in rows] == ["chat", "chat", "completions", "embeddings"]
    assert all(r["status"] == "ok" and r["usage_source"] == "upstream" for r in rows), [
        (r["endpoint"], r["status"], r["usage_source"], r["error_type"]) for r in rows]
    assert rows[0]["prompt_tokens"] == reply.usage.prompt_tokens
    assert rows[1]["completion_tokens"] == 6 and rows[1]["ttft_ms"] is not None


def test_litellm_pool_reaches_the_upstream_through_litellm(start_proxy, fake: Fake,
                                                           pg_url: str) -> None:
    pool = PoolConfig(
        name="via-litellm", kind="litellm", base_urls=[fake.url],
        models=[{"name": "gpt-local", "upstream_name": "openai/fake-model"}],  # type: ignore[list-item]
        api_key="sk-upstream", read_timeout_s=5,  # type: ignore[arg-type]
    )
    proxy = start_proxy([pool], pg_url)
    client = proxy.client()
    reply = client.chat.completions.create(model="gpt-local", messages=MESSAGES)
    assert reply.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    assert fake.app.stats.bodies[-1]["model"] == "fake-model"
    chunks = list(client.chat.completions.create(model="gpt-local", messages=MESSAGES,
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "tok0 tok1 tok2 tok3 tok4")
    rows = wait_rows(pg_url, 2)
    assert all(r["backend"] == "litellm" and r["status"] == "ok" for r in rows)
    assert all(r["completion_tokens"] == 5 and r["usage_source"] == "upstream" for r in rows)


def test_litellm_upstream_failure_is_a_502(start_proxy, fake: Fake, pg_url: str) -> None:
    import openai

    from proxy.fakes.upstream import Behaviour

    fake.app.script(default=Behaviour(status=500))
    pool = PoolConfig(name="via-litellm", kind="litellm", base_urls=[fake.url],
                      models=[{"name": "gpt-local", "upstream_name": "openai/fake-model"}],  # type: ignore[list-item]
                      api_key="sk-upstream")  # type: ignore[arg-type]
    proxy = start_proxy([pool], pg_url, retry_max_attempts=2)
    with pytest.raises(openai.APIStatusError) as caught:
        proxy.client().chat.completions.create(model="gpt-local", messages=MESSAGES)
    assert caught.value.status_code == 502
    (row,) = wait_rows(pg_url, 1)
    assert row["status"] == "upstream_error" and row["retries"] == 1


@pytest.mark.worker
def test_worker_rejects_bad_input_in_openai_format(worker: str) -> None:
    import httpx

    response = httpx.post(worker + "/chat/completions", json={"model": "x", "messages": "hi"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "messages"
    missing = httpx.post(worker + "/completions", content=b"{")
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "invalid_json"
