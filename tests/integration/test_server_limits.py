"""Slow, silent and hostile clients against `sprout-proxy serve` as a real process."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import Fake
from tests.support.fleet import MASTER_KEY, Replica, replica
from tests.support.ledger import rows, wait_rows

LIMITS = {
    "PROXY_SERVER_HEADER_TIMEOUT_S": "1",
    "PROXY_SERVER_BODY_TIMEOUT_S": "2",
    "PROXY_SERVER_KEEP_ALIVE_TIMEOUT_S": "1",
}
MB = 1024 * 1024


@pytest.fixture
def start_served(tmp_path: Path, fake: Fake, pg_url: str) -> Iterator[Callable[..., Replica]]:
    """Start the proxy as a process with the test's limits (and any other settings)."""
    started: list[Replica] = []

    def start(**env: str) -> Replica:
        proxy = replica(tmp_path, f"limits{len(started)}", pg_url, upstream=fake.url,
                        env=LIMITS | env)
        started.append(proxy)
        proxy.process.start()
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def served(start_served: Callable[..., Replica]) -> Replica:
    """The proxy as a process with short client limits."""
    return start_served()


def _connect(proxy: Replica) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _head(key: str, length: int) -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
            f"authorization: Bearer {key}\r\ncontent-type: application/json\r\n"
            f"content-length: {length}\r\n\r\n").encode()


def _response(sock: socket.socket) -> tuple[int, dict[str, str], dict[str, object]]:
    """Status, headers and JSON body of one response."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed without a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    while len(body) < int(headers["content-length"]):
        body += sock.recv(65536)
    return int(lines[0].split()[1]), headers, json.loads(body)


def _closed(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _rss_mb(proxy: Replica) -> float:
    assert proxy.process.process is not None
    status = Path(f"/proc/{proxy.process.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


@pytest.mark.postgres
def test_a_stranger_is_refused_before_its_body_is_read(served: Replica, pg_url: str) -> None:
    with _connect(served) as sock:
        sock.sendall(_head("sk-wrong", 4 * MB - 1) + b"{" * 1000)  # and never the rest
        started = time.monotonic()
        status, headers, body = _response(sock)
        assert time.monotonic() - started < 1  # not after the body timeout
        assert status == 401 and headers["connection"] == "close"
        assert body["error"]["type"] == "authentication_error"  # type: ignore[index]
        assert _closed(sock)
    (row,) = wait_rows(pg_url, 1)
    assert (row["status"], row["http_status"]) == ("rejected", 401)


@pytest.mark.postgres
def test_headers_have_a_deadline_and_a_size(served: Replica) -> None:
    with _connect(served) as silent, _connect(served) as slow, _connect(served) as huge:
        started = time.monotonic()
        slow.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")
        for _ in range(3):  # a byte at a time keeps nothing open past the deadline
            time.sleep(0.25)
            slow.sendall(b"x")
        huge.sendall(b"GET /health HTTP/1.1\r\nx-junk: " + b"a" * (100 * 1024))
        status, _, body = _response(huge)
        assert status == 431 and body["error"]["code"] == "request_header_too_large"  # type: ignore[index]
        status, headers, body = _response(slow)
        assert status == 408 and headers["content-type"] == "application/json"
        assert body["error"]["code"] == "request_timeout"  # type: ignore[index]
        assert 0.9 < time.monotonic() - started < 3
        assert _closed(silent) and _closed(slow)  # the silent one is closed without a word


@pytest.mark.postgres
def test_every_process_of_serve_workers_has_the_limits(
        start_served: Callable[..., Replica]) -> None:
    served = start_served(PROXY_WORKERS="2")  # the protocol travels to each process
    socks = [_connect(served) for _ in range(4)]
    started = time.monotonic()
    assert all(_closed(sock) for sock in socks)
    assert time.monotonic() - started < 3
    for sock in socks:
        sock.close()


@pytest.mark.postgres
def test_idle_keep_alive_connections_close(served: Replica) -> None:
    with _connect(served) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        assert _response(sock)[0] == 200
        started = time.monotonic()
        assert _closed(sock)
        assert 0.8 < time.monotonic() - started < 3


@pytest.mark.postgres
def test_a_stalled_body_gets_408_and_a_row(served: Replica, pg_url: str) -> None:
    with _connect(served) as sock:
        sock.sendall(_head(MASTER_KEY, MB) + b" " * (100 * 1024))
        started = time.monotonic()
        status, headers, body = _response(sock)
        assert status == 408 and headers["connection"] == "close", body
        assert 1.8 < time.monotonic() - started < 4
        assert body["error"]["code"] == "request_timeout"  # type: ignore[index]
    (row,) = wait_rows(pg_url, 1)
    assert (row["status"], row["http_status"], row["error_type"]) == (
        "rejected", 408, "request_timeout")


@pytest.mark.postgres
def test_a_body_past_the_limit_gets_413_in_the_envelope(served: Replica) -> None:
    with _connect(served) as sock:
        sock.sendall(_head(MASTER_KEY, 5 * MB))
        status, headers, body = _response(sock)
        assert status == 413 and headers["connection"] == "close"
        assert body["error"]["code"] == "request_too_large"  # type: ignore[index]


@pytest.mark.postgres
def test_connections_past_the_cap_get_503_in_the_envelope(
        start_served: Callable[..., Replica], pg_url: str) -> None:
    served = start_served(PROXY_SERVER_MAX_CONNECTIONS="5", PROXY_SERVER_HEADER_TIMEOUT_S="30")
    client = served.client()
    idle = [_connect(served) for _ in range(5)]
    time.sleep(0.2)
    try:
        with pytest.raises(openai.InternalServerError) as refused:
            client.chat.completions.create(model="fake-model",
                                           messages=[{"role": "user", "content": "hi"}])
        assert refused.value.status_code == 503
        assert refused.value.response.headers["retry-after"] == "1"
        assert refused.value.code == "too_many_connections"
    finally:
        for sock in idle:
            sock.close()
    time.sleep(0.2)
    client.chat.completions.create(model="fake-model",
                                   messages=[{"role": "user", "content": "hi"}])
    found = wait_rows(pg_url, 2)
    assert sorted(r["http_status"] for r in found) == [200, 503]


@pytest.mark.postgres
def test_memory_returns_after_stalled_uploads(served: Replica, pg_url: str) -> None:
    """Issue #14: 200 stalled 4 MB uploads took RSS from 172 to 966 MB; 607 MB stayed."""
    client = served.client()
    for _ in range(20):  # warm up: imports, pools, caches
        client.chat.completions.create(model="fake-model",
                                       messages=[{"role": "user", "content": "hi"}])
    time.sleep(0.5)
    baseline_mb = _rss_mb(served)
    strangers = [_connect(served) for _ in range(50)]
    for sock in strangers:
        sock.sendall(_head("sk-wrong", 4 * MB - 1) + b" " * (256 * 1024))
    for sock in strangers:
        assert _response(sock)[0] == 401
    strangers_mb = _rss_mb(served)
    uploads = [_connect(served) for _ in range(50)]
    for sock in uploads:  # a valid key, 4 MB declared, all but a byte sent, then silence
        sock.sendall(_head(MASTER_KEY, 4 * MB) + b" " * (4 * MB - 1))
    peak_mb = _rss_mb(served)
    for sock in uploads:
        assert _response(sock)[0] == 408
    for sock in strangers + uploads:
        sock.close()
    time.sleep(1.0)
    after_mb = _rss_mb(served)
    print(f"RSS MB: baseline {baseline_mb:.0f}, after 50 strangers {strangers_mb:.0f}, "
          f"50 stalled uploads {peak_mb:.0f}, after {after_mb:.0f}")
    assert strangers_mb - baseline_mb < 30  # their bodies were never buffered
    assert after_mb - baseline_mb < 60, (baseline_mb, peak_mb, after_mb)
    assert len(wait_rows(pg_url, 120)) == 120
    assert sorted({r["http_status"] for r in rows(pg_url)}) == [200, 401, 408]
