"""A /metrics scrape, parsed with the Prometheus text parser."""

from __future__ import annotations

import collections
import gc
import time

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MASTER_KEY, RunningProxy
from tests.support.ledger import wait_rows


def _samples(proxy: RunningProxy) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = httpx.get(proxy.root + "/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples}


def test_scrape_counts_requests_tokens_energy_and_state(proxy: RunningProxy) -> None:
    client = proxy.client()
    for _ in range(3):
        client.chat.completions.create(model="fake-model",
                                       messages=[{"role": "user", "content": "hi"}])
    list(client.chat.completions.create(model="fake-model", stream=True,
                                        messages=[{"role": "user", "content": "hi"}]))
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    wait_rows(proxy.database_url, 5)
    deadline = time.monotonic() + 5
    while True:
        samples = _samples(proxy)
        ok = samples.get(("sprout_requests_total", frozenset(
            {("endpoint", "chat"), ("status", "ok"), ("pool", "fakes"), ("level", "L0")})))
        if ok == 4:
            break
        assert time.monotonic() < deadline, ok
        time.sleep(0.1)
    rejected = sum(v for (name, labels), v in samples.items()
                   if name == "sprout_requests_total" and ("status", "rejected") in labels)
    assert rejected == 1
    assert samples[("sprout_tokens_total", frozenset(
        {("pool", "fakes"), ("direction", "completion")}))] == 20
    energy = [v for (name, labels), v in samples.items() if name == "sprout_energy_joules_total"]
    assert energy and sum(energy) > 0
    assert samples[("sprout_ttft_ms_count", frozenset({("pool", "fakes")}))] == 1
    assert samples[("sprout_ledger_dropped_rows", frozenset())] == 0
    assert samples[("sprout_pool_in_flight", frozenset({("pool", "fakes")}))] == 0
    assert samples[("sprout_grid_ci_g_per_kwh", frozenset(
        {("pool", "fakes"), ("source", "static")}))] == 300.0
    assert ("sprout_optimiser_last_solve_ms", frozenset()) in samples


def test_the_collector_runs_rarely_under_load(proxy: RunningProxy) -> None:
    # CPython's default threshold (700) collected the young generation ~170 times a second on
    # a loaded proxy, with a full collection (3.5-7 ms, the loop stopped) about once a second.
    def collections() -> dict[str, float]:
        return {dict(labels)["generation"]: value
                for (name, labels), value in _samples(proxy).items()
                if name == "sprout_gc_pause_ms_count"}

    client = proxy.client()
    before = collections()
    for _ in range(400):
        client.chat.completions.create(model="fake-model",
                                       messages=[{"role": "user", "content": "hi"}])
    after = collections()
    young, full = (after[g] - before.get(g, 0.0) for g in ("0", "2"))
    assert young <= 5 and full == 0, (young, full)


_CLIENT = ("httpx", "httpcore", "h11", "anyio", "threading", "_thread", "socket", "ssl")


def _not_the_clients(garbage: list[object]) -> collections.Counter[str]:
    """The garbage that is not the HTTP client's: its objects, grouped into the cycles they make.

    The client (httpx, in this process) leaves a few cycles a request. Every cycle holding an
    object of the client's libraries is taken as the client's; what is left (a scope, a dict,
    a coroutine of the server's) is counted by type.
    """
    index = {id(o): i for i, o in enumerate(garbage)}
    parent = list(range(len(garbage)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, o in enumerate(garbage):
        for referent in gc.get_referents(o):
            j = index.get(id(referent))
            if j is not None:
                parent[root(i)] = root(j)
    clients = {root(i) for i, o in enumerate(garbage)
               if type(o).__module__.split(".")[0] in _CLIENT}
    return collections.Counter(f"{type(o).__module__}.{type(o).__qualname__}"
                               for i, o in enumerate(garbage) if root(i) not in clients)


def test_a_request_leaves_nothing_for_the_collector(proxy: RunningProxy) -> None:
    # A request frees what it allocates by reference counting, which is what lets the young
    # generation's threshold be 20,000 (proxy/lifespan.py). Once the protocol put uvicorn's
    # response cycle in the scope, and the cycle holds the scope: each request left a cycle of
    # ~10 objects, and at c=32 the loop's worst lag went from 11 to 41 ms. The proxy runs in
    # this process (a uvicorn thread), so the collector here sees its garbage; the client's
    # own (httpx keeps a few cycles a request) is told apart by the cycles it is in.
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=proxy.url,
                      headers={"authorization": f"Bearer {MASTER_KEY}"}) as client:
        for _ in range(20):  # warm: first-use caches, the connection's own objects
            client.post("/chat/completions", json=body).raise_for_status()
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(300):
                client.post("/chat/completions", json=body).raise_for_status()
            for _ in range(100):
                with client.stream("POST", "/chat/completions",
                                   json=body | {"stream": True}) as response:
                    response.read()
            gc.collect()
            kinds = _not_the_clients(gc.garbage)
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    # What is left is the jobs' (a SQL expression a run builds: a few dozen objects in all),
    # where a cycle per request is hundreds: 802 objects for a dict cycle in each scope, 5,000
    # for the response cycle.
    assert sum(kinds.values()) < 100, kinds.most_common(10)
