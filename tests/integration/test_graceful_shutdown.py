"""SIGTERM drains in-flight requests for the grace period, then ends them in OpenAI's format."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from proxy.fakes.upstream import Behaviour
from tests.conftest import Fake
from tests.support.fleet import MASTER_KEY, Replica, replica, write_pools
from tests.support.ledger import wait_rows

MESSAGES = [{"role": "user", "content": "hi"}]


def _serve(tmp_path: Path, fake: Fake, pg_url: str, grace_s: float) -> Replica:
    proxy = replica(tmp_path, "stopping", pg_url, upstream=fake.url,
                    env={"PROXY_SHUTDOWN_GRACE_S": str(grace_s)})
    proxy.process.start()
    return proxy


def _in_background(call: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except Exception as exc:  # the test inspects it
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def _terminate_when_upstream_busy(proxy: Replica, fake: Fake) -> float:
    deadline = time.monotonic() + 10
    while fake.app.stats.active == 0:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert proxy.process.process is not None
    proxy.process.process.send_signal(signal.SIGTERM)
    return time.monotonic()


def _exited(proxy: Replica) -> bool:
    """Gone within the grace and the drain; uvicorn re-raises SIGTERM once it is done."""
    assert proxy.process.process is not None
    return proxy.process.process.wait(15) == -signal.SIGTERM


@pytest.mark.postgres
def test_a_request_that_ends_within_the_grace_is_answered(
        tmp_path: Path, fake: Fake, pg_url: str) -> None:
    proxy = _serve(tmp_path, fake, pg_url, grace_s=5)
    fake.app.script(Behaviour(delay_s=1.5))
    thread, outcome = _in_background(lambda: proxy.client(timeout=30).chat.completions.create(
        model="fake-model", messages=MESSAGES))
    _terminate_when_upstream_busy(proxy, fake)
    thread.join(15)
    assert "error" not in outcome and outcome["value"].choices[0].message.content
    assert _exited(proxy)
    (row,) = wait_rows(pg_url, 1)
    assert (row["status"], row["http_status"]) == ("ok", 200)


@pytest.mark.postgres
def test_a_request_past_the_grace_gets_503_in_the_envelope_and_a_true_row(
        tmp_path: Path, fake: Fake, pg_url: str) -> None:
    """Issue #14: a text/plain Internal Server Error, and a row saying status=ok, http 0."""
    proxy = _serve(tmp_path, fake, pg_url, grace_s=1)
    fake.app.script(Behaviour(delay_s=60))
    thread, outcome = _in_background(lambda: proxy.client(timeout=30).chat.completions.create(
        model="fake-model", messages=MESSAGES))
    signalled = _terminate_when_upstream_busy(proxy, fake)
    thread.join(15)
    error = outcome["error"]
    assert isinstance(error, openai.APIStatusError) and error.status_code == 503
    assert error.response.headers["content-type"] == "application/json"
    assert error.code == "server_shutting_down"
    assert 0.9 < time.monotonic() - signalled < 5
    assert _exited(proxy)
    (row,) = wait_rows(pg_url, 1)
    assert (row["status"], row["http_status"], row["error_type"]) == (
        "interrupted", 503, "server_shutting_down")


@pytest.mark.postgres
def test_a_stream_past_the_grace_ends_with_an_error_event(
        tmp_path: Path, fake: Fake, pg_url: str) -> None:
    proxy = _serve(tmp_path, fake, pg_url, grace_s=1)
    fake.app.script(Behaviour(tokens=200, chunk_delay_s=0.2))
    received: list[str] = []

    def consume() -> None:
        stream = proxy.client(timeout=30).chat.completions.create(
            model="fake-model", messages=MESSAGES, stream=True)
        for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")

    thread, outcome = _in_background(consume)
    _terminate_when_upstream_busy(proxy, fake)
    thread.join(15)
    error = outcome["error"]
    assert isinstance(error, openai.APIError) and "shutting down" in error.message
    assert 2 < len(received) < 100  # what came before the grace ran out was relayed
    assert _exited(proxy)
    (row,) = wait_rows(pg_url, 1)
    assert (row["status"], row["http_status"], row["error_type"]) == (
        "interrupted", 200, "server_shutting_down")
    assert row["completion_tokens"] == len(received) or row["usage_estimated"]


@pytest.mark.postgres
def test_requests_still_sending_a_body_or_queued_for_a_slot_get_the_envelope_too(
        tmp_path: Path, fake: Fake, pg_url: str) -> None:
    """Issue #14's gap: the grace ending while a request read its body or waited for a pool
    slot gave a text/plain 500 and no row."""
    pools = write_pools(tmp_path / "pools.yaml", [{
        "name": "one-slot", "base_urls": [fake.url], "models": ["fake-model"],
        "max_concurrency": 1, "accounting": {"meter": "estimate"}}])
    proxy = replica(tmp_path, "stopping", pg_url, pools_file=pools,
                    env={"PROXY_SHUTDOWN_GRACE_S": "1"})
    proxy.process.start()
    fake.app.script(default=Behaviour(delay_s=60))
    # One request holds the pool's only slot upstream; a second queues behind it.
    calls = [_in_background(lambda: proxy.client(timeout=30).chat.completions
                            .create(model="fake-model", messages=MESSAGES)) for _ in range(2)]
    # A third is still sending its body (headers and the first 10 of 1000 bytes).
    uploading = socket.create_connection(("127.0.0.1", proxy.port))
    uploading.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                      b"authorization: Bearer " + MASTER_KEY.encode() + b"\r\n"
                      b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n"
                      b'{"model": ')
    deadline = time.monotonic() + 10
    while proxy.health()["pools"][0]["waiting"] < 1:
        assert time.monotonic() < deadline, (proxy.health()["pools"], fake.app.stats.active)
        time.sleep(0.05)
    _terminate_when_upstream_busy(proxy, fake)
    for thread, _ in calls:
        thread.join(15)
    for _, outcome in calls:
        error = outcome["error"]
        assert isinstance(error, openai.APIStatusError) and error.status_code == 503
        assert error.response.headers["content-type"] == "application/json"
        assert error.code == "server_shutting_down"
    uploading.settimeout(10)
    answer = b""
    while chunk := uploading.recv(65536):
        answer += chunk
    uploading.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and b"content-type: application/json" in head
    assert json.loads(body)["error"]["code"] == "server_shutting_down"
    assert _exited(proxy)
    rows = wait_rows(pg_url, 3)
    assert [(r["status"], r["http_status"], r["error_type"]) for r in rows] == [
        ("interrupted", 503, "server_shutting_down")] * 3
