"""Heterogeneous pools end to end: scripted upstreams as separate processes acting as pools.

Each pool is its own `python -m proxy.fakes.upstream` process on 127.0.0.1, scripted over HTTP;
the proxy is the real app, the client the official openai SDK, the ledger real PostgreSQL.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from proxy.pools.config import PoolConfig
from tests.conftest import MASTER_KEY, RunningProxy
from tests.support.ledger import wait_rows
from tests.support.postgres import free_port
from tests.support.servers import ChildProcess

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}

SHORT = [{"role": "user", "content": "Say hi."}]
LONG = [{"role": "user", "content": "Write a detailed essay on the history of bridges."}]


class FakeProcess:
    """One scripted upstream in a child process."""

    def __init__(self, port: int, process: ChildProcess) -> None:
        self.root = f"http://127.0.0.1:{port}"
        self.url = self.root + "/v1"
        self.process = process

    def script(self, **default: Any) -> None:
        httpx.post(self.root + "/_fake/script", json={"default": default}).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return httpx.get(self.root + "/_fake/stats").json()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Callable[..., FakeProcess]]:
    started: list[ChildProcess] = []

    def start(**default: Any) -> FakeProcess:
        port = free_port()
        process = ChildProcess(
            ["-m", "proxy.fakes.upstream", "--port", str(port), "--model", "fake-model"],
            f"http://127.0.0.1:{port}/v1/models", log_path=tmp_path / f"fake-{port}.log",
        ).start()
        started.append(process)
        fake = FakeProcess(port, process)
        if default:
            fake.script(**default)
        return fake

    yield start
    for process in started:
        process.stop()


def pool(fake: FakeProcess, name: str, hardware: str = "a100", region: str | None = None,
         **options: Any) -> PoolConfig:
    return PoolConfig.model_validate({
        "name": name, "kind": "openai", "base_urls": [fake.url], "models": ["fake-model"],
        "read_timeout_s": 10.0,
        "accounting": {"meter": "estimate", "hardware": hardware, "region": region},
    } | options)


def chat(proxy: RunningProxy, messages: list[dict[str, str]], api_key: str | None = None,
         **options: Any) -> str:
    """One request; the pool that answered it."""
    client = proxy.client(api_key=api_key) if api_key else proxy.client()
    raw = client.chat.completions.with_raw_response.create(
        model="fake-model", messages=messages, **options)
    raw.parse()
    return raw.headers["x-sprout-pool"]


def assert_one_row_each(rows: list[dict[str, Any]], requests: int) -> None:
    assert len(rows) == requests
    assert len({r["request_id"] for r in rows}) == requests


def test_routing_follows_the_cost_model(start_proxy, upstream, pg_url) -> None:
    m1, a100 = upstream(tokens=300), upstream(tokens=300)
    proxy = start_proxy([pool(m1, "m1", "m1-pro"), pool(a100, "a100", "a100")], pg_url,
                        routing_lambda=1.0, routing_objective="energy")
    # A long answer (the L0 prior, 272 tokens) costs less energy on the A100 ...
    assert chat(proxy, LONG) == "a100"
    # ... a short one (max_tokens caps the forecast) less on the M1 Pro (Wilkins' curves).
    assert chat(proxy, SHORT, max_tokens=8) == "m1"
    # A key that puts latency first (lambda 0) gets the faster A100 even for short requests.
    key = httpx.post(proxy.root + "/admin/keys", headers=ADMIN, json={
        "name": "latency-first", "policy": {"routing_lambda": 0.0}}).json()["key"]
    assert chat(proxy, SHORT, api_key=key, max_tokens=8) == "a100"
    rows = wait_rows(pg_url, 3)
    assert_one_row_each(rows, 3)
    assert [r["route_policy"] for r in rows] == [
        "cost:lambda=1:energy", "cost:lambda=1:energy", "cost:lambda=0:energy"]
    assert rows[0]["predicted_output_tokens"] == 272.0
    assert rows[1]["predicted_output_tokens"] == 8.0
    assert rows[1]["predicted_energy_j"] < rows[0]["predicted_energy_j"]
    assert m1.stats()["completed"] == 1 and a100.stats()["completed"] == 2


def test_slo_filter_moves_traffic_off_a_measured_slow_pool(start_proxy, upstream,
                                                           pg_url) -> None:
    slow_green = upstream(delay_s=0.6)  # on the cleaner grid, but slow to first token
    fast_grey = upstream()
    slo = {"slo": {"ttft_ms": 250}}
    proxy = start_proxy([pool(slow_green, "green", region="GB", **slo),
                         pool(fast_grey, "grey", region="US-TEX-ERCO", **slo)],
                        pg_url, routing_lambda=1.0)
    client = proxy.client()
    served = []
    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="fake-model", messages=SHORT, stream=True)
        served.append(raw.headers["x-sprout-pool"])
        list(raw.parse())
    # The profile predicts both meet the SLO and GB is cleaner; once green's time to first
    # token is measured (0.6 s > 250 ms) it drops below the pools that meet the SLO.
    assert served == ["green", "grey", "grey"]
    rows = wait_rows(pg_url, 3)
    assert_one_row_each(rows, 3)
    assert rows[0]["ttft_ms"] > 500 and all(r["status"] == "ok" for r in rows)


def test_failing_pool_fails_over_and_its_breaker_opens(start_proxy, upstream, pg_url) -> None:
    failing = upstream(status=503)  # the cleanest grid, so the cost model tries it first
    steady = upstream()
    proxy = start_proxy([pool(failing, "failing", region="GB", breaker_failures=2,
                              breaker_cooldown_s=60),
                         pool(steady, "steady", region="US-TEX-ERCO")],
                        pg_url, retry_max_attempts=1, routing_lambda=1.0)
    assert [chat(proxy, SHORT) for _ in range(5)] == ["steady"] * 5
    rows = wait_rows(pg_url, 5)
    assert_one_row_each(rows, 5)
    assert all(r["status"] == "ok" and r["pool"] == "steady" for r in rows)
    # Two failovers (retries recorded on those rows), then the open breaker skips the pool.
    assert [r["retries"] for r in rows] == [1, 1, 0, 0, 0]
    assert failing.stats()["requests"] == 2
    assert steady.stats()["completed"] == 5
    pools = {p["name"]: p for p in httpx.get(proxy.root + "/admin/pools", headers=ADMIN).json()}
    assert pools["failing"]["circuit_breakers"][0]["state"] == "open"
    assert pools["steady"]["circuit_breakers"][0]["state"] == "closed"
    assert pools["steady"]["routing"]["measured"]["per_token_s"] is not None


def test_full_pools_shed_load_then_answer_429(start_proxy, upstream, pg_url) -> None:
    first, second = upstream(delay_s=1.5), upstream(delay_s=1.5)
    limits = {"max_concurrency": 1, "max_queue": 0}
    proxy = start_proxy([pool(first, "first", region="GB", **limits),
                         pool(second, "second", region="US-TEX-ERCO", **limits)],
                        pg_url, routing_lambda=1.0)
    with concurrent.futures.ThreadPoolExecutor(2) as workers:
        busy = [workers.submit(chat, proxy, SHORT)]
        _wait(lambda: first.stats()["active"] == 1)
        busy.append(workers.submit(chat, proxy, SHORT))  # the cheaper pool is full: the other
        _wait(lambda: second.stats()["active"] == 1)
        with pytest.raises(openai.RateLimitError) as caught:
            proxy.client().chat.completions.create(model="fake-model", messages=SHORT)
        assert sorted(f.result() for f in busy) == ["first", "second"]
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.body["code"] == "pool_overloaded"
    rows = wait_rows(pg_url, 3)
    assert_one_row_each(rows, 3)
    assert sorted(r["status"] for r in rows) == ["ok", "ok", "rejected"]
    assert first.stats()["completed"] + second.stats()["completed"] == 2


def _wait(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def test_joint_lp_places_traffic_and_the_router_follows(start_proxy, upstream, pg_url) -> None:
    m1, a100 = upstream(tokens=4), upstream(tokens=4)
    proxy = start_proxy(
        [pool(m1, "m1", "m1-pro", accounting={"meter": "estimate", "hardware": "m1-pro",
                                              "embodied_device": "apple-silicon-mini"}),
         pool(a100, "a100", "a100", accounting={"meter": "estimate", "hardware": "a100",
                                                "embodied_device": "a100-instance-share"})],
        pg_url, routing_policy="joint")
    # The start-up solve planned with the prior answer length (272 tokens): the A100. It is
    # the scheduler's first run of the job, so wait for it: on a loaded machine it can come
    # after the first requests, and then plans with their learnt length instead.
    _wait(lambda: httpx.get(proxy.root + "/admin/optimiser", headers=ADMIN).json()["runs"],
          timeout_s=30)
    before = [chat(proxy, SHORT) for _ in range(3)]
    assert before == ["a100"] * 3
    solved = httpx.post(proxy.root + "/admin/optimiser/solve", headers=ADMIN).json()
    allocation = solved["allocation"]
    assert allocation["pools"] == ["m1", "a100"]
    # Re-solved with the learnt length (4 tokens); cold start (no verdicts), so the baseline
    # level only; such short answers cost less energy and carbon on the M1.
    assert allocation["placement"]["*"][0] == [1.0, 0.0]
    assert "joint LP" in allocation["reason"] and "utilisation" in allocation["reason"]
    after = [chat(proxy, SHORT) for _ in range(3)]
    assert after == ["m1"] * 3
    rows = wait_rows(pg_url, 6)
    assert_one_row_each(rows, 6)
    assert [r["route_policy"] for r in rows] == ["joint:lp"] * 6
    assert m1.stats()["completed"] + a100.stats()["completed"] == 6


def test_health_probes_open_a_dead_backend_before_any_request(start_proxy, upstream,
                                                              pg_url) -> None:
    live = upstream()
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    proxy = start_proxy(
        [PoolConfig.model_validate({"name": "p", "base_urls": [live.url, dead],
                                    "models": ["fake-model"], "breaker_failures": 2,
                                    "breaker_cooldown_s": 60,
                                    "accounting": {"meter": "estimate"}})],
        pg_url, pool_health_interval_s=0.2)

    def states() -> dict[str, str]:
        pools = httpx.get(proxy.root + "/admin/pools", headers=ADMIN).json()
        return {b["backend"]: b["state"] for b in pools[0]["circuit_breakers"]}

    _wait(lambda: states()[dead] == "open")
    assert states()[live.url] == "closed"
    assert [chat(proxy, SHORT) for _ in range(4)] == ["p"] * 4
    rows = wait_rows(pg_url, 4)
    assert [r["retries"] for r in rows] == [0, 0, 0, 0]  # no client met the dead backend
    assert {r["backend_url"] for r in rows} == {live.url}


def test_per_backend_limit_spreads_load_then_429(start_proxy, upstream, pg_url) -> None:
    first, second = upstream(delay_s=1.5), upstream(delay_s=1.5)
    proxy = start_proxy(
        [PoolConfig.model_validate({"name": "p", "base_urls": [first.url, second.url],
                                    "models": ["fake-model"], "max_concurrency": 64,
                                    "max_concurrency_per_backend": 1, "max_queue": 0,
                                    "accounting": {"meter": "estimate"}})], pg_url)
    with concurrent.futures.ThreadPoolExecutor(2) as workers:
        busy = [workers.submit(chat, proxy, SHORT) for _ in range(2)]
        _wait(lambda: first.stats()["active"] == 1 and second.stats()["active"] == 1)
        with pytest.raises(openai.RateLimitError):  # both backends at their limit of one
            proxy.client().chat.completions.create(model="fake-model", messages=SHORT)
        assert [f.result() for f in busy] == ["p", "p"]
    rows = wait_rows(pg_url, 3)
    assert_one_row_each(rows, 3)
    assert sorted(r["status"] for r in rows) == ["ok", "ok", "rejected"]
    assert chat(proxy, SHORT) == "p"  # slots given back
