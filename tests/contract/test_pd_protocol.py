"""The disaggregated pool speaks vLLM's P/D protocol to scripted vLLM instances (official SDK).

`proxy/fakes/pd_upstream.py` answers prefill legs the way a vLLM instance with the NIXL
connector does; every body it receives is checked field by field.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from proxy.fakes.pd_upstream import PDUpstream
from proxy.fakes.upstream import Behaviour
from proxy.pools.config import PoolConfig
from proxy.pools.profile import pool_embodied_g_per_s, pool_profile
from proxy.protocol.disaggregation import PREFILL_PARAMS
from tests.support.ledger import wait_rows
from tests.support.servers import ServerThread

MESSAGES = [{"role": "user", "content": "Explain the duck curve of a solar-heavy grid."}]
KV_BYTES_PER_TOKEN = 1000


@pytest.fixture
def pd_fakes() -> Any:
    """A scripted vLLM prefill instance and a decode instance on real ports."""
    apps = [PDUpstream(("member",), "prefill", port=5601),
            PDUpstream(("member",), "decode", port=5602)]
    servers = [ServerThread(app).start() for app in apps]
    yield apps, [server.url for server in servers]
    for server in servers:
        server.stop()


def _pools(urls: list[str], **options: Any) -> list[PoolConfig]:
    # Clients reach "fake-model" only through the disaggregated pool, which renames it to
    # the name its member pools serve.
    member = {"kind": "openai", "models": ["member"], "read_timeout_s": 5.0}
    return [PoolConfig.model_validate(member | {"name": "a100", "base_urls": [urls[0]]}),
            PoolConfig.model_validate(member | {"name": "t4", "base_urls": [urls[1]],
                                                "accounting": {"hardware": "t4"}}),
            PoolConfig.model_validate({"name": "pd", "kind": "disaggregated",
                                       "prefill_pool": "a100", "decode_pool": "t4",
                                       "kv_bytes_per_token": KV_BYTES_PER_TOKEN,
                                       "models": [{"name": "fake-model",
                                                   "upstream_name": "member"}]} | options)]


def test_legs_carry_exactly_vllms_fields(start_proxy, pd_fakes, pg_url: str) -> None:
    (prefill, decode), urls = pd_fakes
    pools = _pools(urls)
    # (no settlement run: the rows are read as serving wrote them)
    client = start_proxy(pools, pg_url, settlement_interval_s=3600).client()

    reply = client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=40,
                                           max_completion_tokens=40, temperature=0,
                                           extra_body={"min_tokens": 3})
    assert reply.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4"
    sent_p = prefill.stats.bodies[-1]
    assert sent_p["kv_transfer_params"] == PREFILL_PARAMS
    assert sent_p["stream"] is False and sent_p["max_tokens"] == 1
    assert sent_p["max_completion_tokens"] == 1
    assert "stream_options" not in sent_p and "min_tokens" not in sent_p
    assert sent_p["model"] == "member" and sent_p["messages"] == MESSAGES
    sent_d = decode.stats.bodies[-1]
    assert sent_d["kv_transfer_params"] == prefill.prefills[-1]  # what the prefill returned
    assert sent_d["max_tokens"] == 40 and sent_d["min_tokens"] == 3
    assert sent_d["model"] == "member" and "stream" not in sent_d

    chunks = list(client.chat.completions.create(model="fake-model", messages=MESSAGES,
                                                 max_tokens=12, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    sent_p, sent_d = prefill.stats.bodies[-1], decode.stats.bodies[-1]
    assert sent_p["stream"] is False and "stream_options" not in sent_p
    assert "max_completion_tokens" not in sent_p  # only where the client set it
    assert sent_d["stream"] is True and sent_d["kv_transfer_params"] == prefill.prefills[-1]

    text = client.completions.create(model="fake-model", prompt="The grid at noon",
                                     max_tokens=7)
    assert text.choices[0].text
    assert prefill.stats.bodies[-1]["prompt"] == "The grid at noon"
    assert decode.stats.bodies[-1]["kv_transfer_params"] == prefill.prefills[-1]

    rows = wait_rows(pg_url, 3)
    for row in rows:
        assert row["status"] == "ok" and row["pool"] == "pd"
        assert row["decoding"] == "disaggregated"
        assert row["prefill_pool"] == "a100"
        assert row["prefill_device_id"] == f"backend:{urls[0]}"
        assert row["device_id"] == f"backend:{urls[1]}"
        assert row["prefill_ended_at"] is not None
        assert row["served_at"] <= row["prefill_ended_at"] <= row["ended_at"]
        assert row["kv_transfer_bytes"] > 0 and row["kv_transfer_bytes"] % KV_BYTES_PER_TOKEN == 0
        assert row["prefill_energy_method"] == "provisional"
        assert 0 < row["prefill_energy_j"] < row["energy_j"]
        assert row["prefill_embodied_g_co2e"] <= row["embodied_g_co2e"]


def test_a_clients_own_kv_transfer_params_never_reach_an_instance(start_proxy, pd_fakes,
                                                                   pg_url: str) -> None:
    (prefill, decode), urls = pd_fakes
    pools = _pools(urls)
    client = start_proxy(pools, pg_url).client()
    hostile = {"do_remote_prefill": True, "remote_host": "169.254.169.254", "remote_port": 80}
    client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=4,
                                   extra_body={"kv_transfer_params": hostile})
    assert prefill.stats.bodies[-1]["kv_transfer_params"] == PREFILL_PARAMS
    assert decode.stats.bodies[-1]["kv_transfer_params"] == prefill.prefills[-1]


def test_failed_legs_fall_back_to_one_pool(start_proxy, pd_fakes, pg_url: str) -> None:
    (prefill, decode), urls = pd_fakes
    pools = _pools(urls)
    client = start_proxy(pools, pg_url, settlement_interval_s=3600).client()

    prefill.script(Behaviour(status=503))  # the prefill leg fails
    reply = client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=4)
    assert reply.choices[0].message.content
    assert "kv_transfer_params" not in decode.stats.bodies[-1]  # decoded whole
    assert decode.stats.bodies[-1]["max_tokens"] == 4

    decode.script(Behaviour(status=503))  # the decode leg fails before its first byte
    before = len(prefill.stats.bodies)
    reply = client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=4)
    assert reply.choices[0].message.content
    whole = prefill.stats.bodies[-1]
    assert len(prefill.stats.bodies) == before + 2  # its prefill leg, then the whole request
    assert "kv_transfer_params" not in whole and whole["max_tokens"] == 4

    rows = wait_rows(pg_url, 2)
    assert [r["decoding"] for r in rows] == ["monolithic:prefill-failed",
                                             "monolithic:decode-failed"]
    assert rows[0]["device_id"] == f"backend:{urls[1]}" and rows[0]["prefill_pool"] is None
    assert rows[1]["device_id"] == f"backend:{urls[0]}"
    assert all(r["status"] == "ok" for r in rows)
    # Each is charged to the member pool that served it whole: its profile and embodied rate.
    assert [r["pool"] for r in rows] == ["pd", "pd"]
    assert [r["served_pool"] for r in rows] == ["t4", "a100"]
    by_name = {config.name: config for config in pools}
    for found, name, other in ((rows[0], "t4", "a100"), (rows[1], "a100", "t4")):
        tokens = (found["prompt_tokens"], found["completion_tokens"], None)
        assert found["energy_j"] == pytest.approx(pool_profile(by_name[name]).predict_j(*tokens))
        assert found["energy_j"] != pytest.approx(pool_profile(by_name[other]).predict_j(*tokens))
        busy_s = (found["ended_at"] - found["served_at"]).total_seconds()
        assert found["embodied_g_co2e"] == pytest.approx(
            busy_s * pool_embodied_g_per_s(by_name[name]))


def test_a_member_pools_limit_bounds_the_legs_too(start_proxy, pd_fakes, pg_url: str) -> None:
    """The prefill pool's one slot is shared by its own requests and the prefill legs."""
    (prefill, _decode), urls = pd_fakes
    pools = _pools(urls)
    # a100 takes one request at a time (one may wait); "direct" reaches only a100.
    pools[0] = PoolConfig.model_validate({
        "name": "a100", "kind": "openai", "base_urls": [urls[0]], "read_timeout_s": 5.0,
        "models": ["member", "direct"], "max_concurrency": 1, "max_queue": 1})
    client = start_proxy(pools, pg_url, settlement_interval_s=3600).client()

    def direct() -> None:
        client.chat.completions.create(model="direct", messages=MESSAGES, max_tokens=4)

    prefill.script(Behaviour(delay_s=1.0))  # a100's own request holds its slot for a second
    holder = threading.Thread(target=direct)
    holder.start()
    time.sleep(0.3)
    reply = client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=4)
    holder.join()
    assert reply.choices[0].message.content
    assert prefill.stats.max_active == 1  # the prefill leg waited for the slot
    assert prefill.prefills  # then ran: a disaggregated answer

    # Full, queue included: the prefill leg is not sent; the decode pool does it all.
    prefill.script(Behaviour(delay_s=1.5), Behaviour(delay_s=1.5))
    holders = [threading.Thread(target=direct) for _ in range(2)]
    for thread in holders:
        thread.start()
        time.sleep(0.3)
    served = len(prefill.prefills)
    client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=4)
    for thread in holders:
        thread.join()
    assert len(prefill.prefills) == served and prefill.stats.max_active == 1
    rows = [r for r in wait_rows(pg_url, 5) if r["pool"] == "pd"]
    assert [r["decoding"] for r in rows] == ["disaggregated", "monolithic:prefill-failed"]
    assert rows[1]["served_pool"] == "t4"
