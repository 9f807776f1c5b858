"""Bad input: a 4xx in OpenAI's envelope, never a 500, and a `rejected` ledger row."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, RunningProxy, fake_pool
from tests.support.ledger import wait_rows

AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
CHAT = "/chat/completions"

CASES = [
    ("malformed json", b'{"model": "fake-model", "messages": [', 400, "invalid_json", None),
    ("empty body", b"", 400, None, None),
    ("not an object", b"[1, 2]", 400, None, None),
    ("missing messages", b'{"model": "fake-model"}', 400, "invalid_parameter", "messages"),
    ("missing model", b'{"messages": [{"role": "user", "content": "x"}]}', 400,
     "invalid_parameter", "model"),
    ("wrong type", b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', 400,
     "invalid_parameter", "model"),
    ("stream not bool", b'{"model": "fake-model", "stream": "yes", '
     b'"messages": [{"role": "user", "content": "x"}]}', 400, "invalid_parameter", "stream"),
    ("bad role", b'{"model": "fake-model", "messages": [{"role": "boss", "content": "x"}]}',
     400, "invalid_parameter", "messages.0.role"),
    ("temperature out of range", b'{"model": "fake-model", "temperature": 9, '
     b'"messages": [{"role": "user", "content": "x"}]}', 400, "invalid_parameter",
     "temperature"),
    ("empty messages", b'{"model": "fake-model", "messages": []}', 400, "invalid_parameter",
     "messages"),
    ("unknown model", b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}',
     404, "model_not_found", "model"),
]


@pytest.mark.parametrize(("body", "status", "code", "param"),
                         [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_bodies(proxy: RunningProxy, body: bytes, status: int, code: str | None,
                    param: str | None) -> None:
    response = httpx.post(proxy.url + CHAT, content=body, headers=AUTH)
    assert response.status_code == status
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["code"] == code and error["param"] == param
    (row,) = wait_rows(proxy.database_url, 1)
    assert row["status"] == "rejected" and row["http_status"] == status


def test_oversized_body_is_413(start_proxy, fake, pg_url: str) -> None:
    proxy = start_proxy([fake_pool(fake)], pg_url, max_body_bytes=2048)
    big = "x" * 5000
    with pytest.raises(openai.APIStatusError) as caught:
        proxy.client().chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": big}])
    assert caught.value.status_code == 413
    assert caught.value.body["code"] == "request_too_large"  # type: ignore[index]
    # Without a content-length (chunked), the limit still holds while reading.
    chunks = iter([b'{"model": "fake-model", "messages": [{"role": "user", "content": "',
                   big.encode(), b'"}]}'])
    response = httpx.post(proxy.url + CHAT, content=chunks, headers=AUTH)
    assert response.status_code == 413
    rows = wait_rows(pg_url, 2)
    assert {r["status"] for r in rows} == {"rejected"} and fake.app.stats.requests == 0


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"},
                                     {"authorization": "Basic abc"}])
def test_missing_or_invalid_key_is_401(proxy: RunningProxy, headers: dict[str, str]) -> None:
    response = httpx.post(proxy.url + CHAT, headers=headers,
                          json={"model": "fake-model", "messages": [{"role": "user",
                                                                     "content": "x"}]})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"
    (row,) = wait_rows(proxy.database_url, 1)
    assert row["status"] == "rejected" and row["api_key_id"] is None


def test_sdk_sees_authentication_error(proxy: RunningProxy) -> None:
    with pytest.raises(openai.AuthenticationError):
        proxy.client(api_key="sk-wrong").models.list()


def test_unknown_route_and_method_are_openai_errors(proxy: RunningProxy) -> None:
    missing = httpx.post(proxy.url + "/nope", headers=AUTH, json={})
    assert missing.status_code == 404 and "error" in missing.json()
    wrong_method = httpx.get(proxy.url + CHAT, headers=AUTH)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_multimodal_and_extra_fields_are_accepted(proxy: RunningProxy, fake) -> None:
    messages = [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]}]
    proxy.client().chat.completions.create(
        model="fake-model", messages=messages,  # type: ignore[arg-type]
        extra_body={"brand_new_field": {"x": 1}})
    sent = fake.app.stats.bodies[-1]
    assert sent["brand_new_field"] == {"x": 1} and sent["messages"] == messages
