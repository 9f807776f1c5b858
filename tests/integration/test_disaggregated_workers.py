"""Prefill on one worker process, decode on another, through the proxy (vLLM's P/D protocol).

Both workers serve the tiny demo model the tests build (`--model demo`-style: a 2-layer Llama
with random weights, so the text is meaningless; the mechanics are real), on the CPU.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from proxy.pools.config import PoolConfig
from tests.conftest import MASTER_KEY
from tests.support.ledger import wait_rows
from tests.support.postgres import free_port
from tests.support.servers import ChildProcess

MODEL = "sprout-demo-tiny"
MESSAGES = [{"role": "user", "content": "Why do old GPUs still decode well at night?"}]

pytestmark = pytest.mark.worker


@pytest.fixture(scope="module")
def two_workers(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[list[str]]:
    """Two worker processes on the demo model; their /v1 URLs (prefill first)."""
    processes, urls = [], []
    for role in ("prefill", "decode"):
        port = free_port()
        processes.append(ChildProcess(
            ["-m", "worker", "--model", str(demo_model_dir), "--served-name", MODEL,
             "--port", str(port), "--log-level", "warning", "--kv-hold-s", "30"],
            f"http://127.0.0.1:{port}/health",
            log_path=tmp_path_factory.mktemp(role) / "worker.log").start())
        urls.append(f"http://127.0.0.1:{port}/v1")
    yield urls
    for process in processes:
        process.stop()


def _pools(prefill_url: str, decode_url: str) -> list[PoolConfig]:
    member = {"kind": "worker", "models": [MODEL], "read_timeout_s": 60.0}
    return [PoolConfig.model_validate(member | {"name": "new-gpu", "base_urls": [prefill_url]}),
            PoolConfig.model_validate(member | {"name": "old-gpu", "base_urls": [decode_url],
                                                "accounting": {"hardware": "t4"}}),
            PoolConfig.model_validate({"name": "pd", "kind": "disaggregated",
                                       "prefill_pool": "new-gpu", "decode_pool": "old-gpu",
                                       "models": [{"name": "pd-model",
                                                   "upstream_name": MODEL}]})]


def _held(url: str) -> dict[str, int]:
    kv: dict[str, int] = httpx.get(url.removesuffix("/v1") + "/health").json()["kv"]
    return kv


def _wait_released(url: str) -> dict[str, int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kv = _held(url)
        if kv["entries"] == 0 and kv["bytes"] == 0:
            return kv
        time.sleep(0.1)
    raise AssertionError(f"KV still held: {_held(url)}")


def test_split_output_equals_one_workers(start_proxy, two_workers, tmp_path) -> None:
    prefill_url, decode_url = two_workers
    database_url = f"sqlite:///{tmp_path}/ledger.db"
    client = start_proxy(_pools(prefill_url, decode_url), database_url).client()
    alone = httpx.Client(base_url=decode_url, timeout=60)  # one worker does it all

    expected = alone.post("/chat/completions", json={
        "model": MODEL, "messages": MESSAGES, "max_tokens": 24, "temperature": 0}).json()
    reply = client.chat.completions.create(model="pd-model", messages=MESSAGES, max_tokens=24,
                                           temperature=0)
    assert reply.choices[0].message.content == expected["choices"][0]["message"]["content"]
    assert reply.usage is not None and reply.usage.completion_tokens == 24
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model="pd-model", messages=MESSAGES, max_tokens=24, temperature=0, stream=True)
        if c.choices)
    assert streamed == expected["choices"][0]["message"]["content"]

    prompt = "The grid at noon, the grid at night, and the batteries between"
    expected_text = alone.post("/completions", json={
        "model": MODEL, "prompt": prompt, "max_tokens": 20, "temperature": 0}).json()
    text = client.completions.create(model="pd-model", prompt=prompt, max_tokens=20,
                                     temperature=0)
    assert text.choices[0].text == expected_text["choices"][0]["text"]
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model="pd-model", prompt=prompt, max_tokens=20, temperature=0, stream=True))
    assert streamed == expected_text["choices"][0]["text"]

    rows = wait_rows(database_url, 4)
    assert [r["decoding"] for r in rows] == ["disaggregated"] * 4
    assert all(r["status"] == "ok" and r["kv_transfer_bytes"] > 0 for r in rows)
    assert all(r["prefill_pool"] == "new-gpu" and r["prefill_device_id"] for r in rows)
    kv = _wait_released(prefill_url)  # every held cache was released once its decode began
    assert kv["held"] >= 4 and kv["released"] >= 4 and kv["pulled"] >= 4


def test_disconnect_frees_the_held_kv(start_proxy, two_workers, tmp_path) -> None:
    prefill_url, decode_url = two_workers
    database_url = f"sqlite:///{tmp_path}/ledger.db"
    proxy = start_proxy(_pools(prefill_url, decode_url), database_url)
    body = {"model": "pd-model", "messages": MESSAGES, "max_tokens": 600, "temperature": 0,
            "stream": True}
    with httpx.stream("POST", proxy.url + "/chat/completions", json=body, timeout=60,
                      headers={"authorization": f"Bearer {MASTER_KEY}"}) as response:
        assert response.status_code == 200
        next(response.iter_bytes())  # the decode has begun; then the client goes away
    kv = _wait_released(prefill_url)
    assert kv["bytes"] == 0
    deadline = time.monotonic() + 10  # the decode worker stops generating too
    while httpx.get(decode_url.removesuffix("/v1") + "/health").json()["batch"]["active"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    rows = wait_rows(database_url, 1)
    assert rows[0]["status"] == "client_disconnect"


def test_a_dead_prefill_worker_falls_back_to_decoding_whole(start_proxy, two_workers,
                                                            tmp_path) -> None:
    _prefill_url, decode_url = two_workers
    dead = f"http://127.0.0.1:{free_port()}/v1"
    database_url = f"sqlite:///{tmp_path}/ledger.db"
    client = start_proxy(_pools(dead, decode_url), database_url).client()
    expected = httpx.post(decode_url + "/chat/completions", timeout=60, json={
        "model": MODEL, "messages": MESSAGES, "max_tokens": 12, "temperature": 0}).json()
    reply = client.chat.completions.create(model="pd-model", messages=MESSAGES, max_tokens=12,
                                           temperature=0)
    assert reply.choices[0].message.content == expected["choices"][0]["message"]["content"]
    rows = wait_rows(database_url, 1)
    assert rows[0]["status"] == "ok" and rows[0]["decoding"] == "monolithic:prefill-failed"
