"""A backend URL's user and password reach the backend, and nowhere else."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, Fake, RunningProxy, fake_pool
from tests.support.ledger import wait_rows
from tests.support.postgres import free_port
from tests.support.servers import ServerThread

SECRET = "s3cret-pw"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.postgres
def test_credentials_in_backend_urls_are_never_shown(
        start_proxy: Callable[..., RunningProxy], fake: Fake, pg_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    live = fake.url.replace("http://", f"http://ops:{SECRET}@")
    dead_port = free_port()  # nothing listens there
    dead = f"http://ops:{SECRET}@127.0.0.1:{dead_port}/v1"
    proxy = start_proxy([fake_pool(fake, base_urls=[live]),
                         fake_pool(fake, name="gone", base_urls=[dead], models=["gone-model"])],
                        pg_url, pool_health_interval_s=0.2)
    client = proxy.client()
    assert client.chat.completions.create(model="fake-model", messages=MESSAGES).choices
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="gone-model", messages=MESSAGES)
    # The client is told what happened, not where: no internal host:port, no password.
    assert caught.value.status_code == 502
    assert "could not connect" in caught.value.message
    assert str(dead_port) not in caught.value.message and "127.0.0.1" not in caught.value.message
    time.sleep(0.5)  # a few health probes of the dead backend

    ok, failed = wait_rows(pg_url, 2)
    port = fake.url.split(":")[2].split("/")[0]
    assert ok["backend_url"] == f"http://***@127.0.0.1:{port}/v1"
    assert failed["backend_url"] == f"http://***@127.0.0.1:{dead_port}/v1"
    assert f"127.0.0.1:{dead_port}" in failed["error_message"]  # operators see where
    auth = {"authorization": f"Bearer {MASTER_KEY}"}
    shown = {
        "rows": repr([ok, failed]),
        "/admin/requests": httpx.get(proxy.root + "/admin/requests", headers=auth).text,
        "/admin/pools": httpx.get(proxy.root + "/admin/pools", headers=auth).text,
        "/metrics": httpx.get(proxy.root + "/metrics").text,
        "logs": caplog.text,
    }
    assert "***@127.0.0.1" in shown["/admin/pools"] and "failed its health probe" in caplog.text
    for where, text in shown.items():
        assert SECRET not in text, (where, text[text.find(SECRET) - 300:text.find(SECRET) + 50])


@pytest.mark.postgres
def test_the_backend_gets_the_url_credentials_as_basic_auth(
        start_proxy: Callable[..., RunningProxy], pg_url: str) -> None:
    seen: list[str | None] = []

    async def upstream(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        seen.append(dict(scope["headers"]).get(b"authorization", b"").decode() or None)
        body = (b'{"id":"x","object":"chat.completion","created":0,"model":"m","choices":'
                b'[{"index":0,"message":{"role":"assistant","content":"ok"},'
                b'"finish_reason":"stop"}]}')
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    server = ServerThread(upstream).start()
    try:
        url = server.url.replace("http://", f"http://ops:{SECRET}@")
        proxy = start_proxy([fake_pool(base_urls=[url])], pg_url,
                            pool_health_interval_s=3600)
        proxy.client().chat.completions.create(model="fake-model", messages=MESSAGES)
    finally:
        server.stop()
    assert f"Basic {base64.b64encode(f'ops:{SECRET}'.encode()).decode()}" in seen
