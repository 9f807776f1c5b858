"""The admin REST API on real PostgreSQL: auth everywhere, keys, requests, stats, operations."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tests.conftest import MASTER_KEY, Fake, RunningProxy, fake_pool
from tests.support.ledger import rows, wait_rows

ADMIN = {"authorization": f"Bearer {MASTER_KEY}"}
MESSAGES = [{"role": "user", "content": "Name three primary colours."}]


@pytest.fixture
def admin_proxy(start_proxy, fake: Fake, pg_url: str) -> RunningProxy:
    return start_proxy([fake_pool(fake)], pg_url)


def test_every_admin_route_needs_the_master_key(admin_proxy: RunningProxy) -> None:
    created = httpx.post(admin_proxy.root + "/admin/keys", headers=ADMIN,
                         json={"name": "client"}).json()
    schema = httpx.get(admin_proxy.root + "/openapi.json").json()
    admin_paths = [(path, method) for path, methods in schema["paths"].items()
                   if path.startswith("/admin") for method in methods]
    assert len(admin_paths) >= 10
    for path, method in admin_paths:
        url = admin_proxy.root + path.replace("{key_id}", "x").replace("{request_id}", "x")
        for headers in ({}, {"authorization": f"Bearer {created['key']}"}):
            response = httpx.request(method.upper(), url, headers=headers, json={})
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["error"]["type"] == "authentication_error"


def test_virtual_keys_lifecycle(admin_proxy: RunningProxy) -> None:
    root = admin_proxy.root
    response = httpx.post(root + "/admin/keys", headers=ADMIN, json={
        "name": "team-a", "policy": {"directive": "L1", "capture_prompts": True}})
    assert response.status_code == 201
    created = response.json()
    assert created["key"].startswith("sk-sprout-") and created["policy"]["directive"] == "L1"
    listed = httpx.get(root + "/admin/keys", headers=ADMIN).json()
    assert [k["key_id"] for k in listed] == [created["key_id"]]
    assert "key" not in listed[0]  # shown once, at creation
    assert created["key"] not in str(rows(admin_proxy.database_url))

    client = admin_proxy.client(api_key=created["key"])
    raw = client.chat.completions.with_raw_response.create(model="fake-model", messages=MESSAGES)
    assert raw.headers["x-sprout-directive"] == "L1"  # the key's policy applies at once

    revoked = httpx.delete(root + f"/admin/keys/{created['key_id']}", headers=ADMIN).json()
    assert revoked["revoked_at"] is not None
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert httpx.delete(root + "/admin/keys/nope", headers=ADMIN).status_code == 404
    bad = httpx.post(root + "/admin/keys", headers=ADMIN,
                     json={"name": "x", "policy": {"directive": "L9"}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "policy.directive"
    missing = httpx.post(root + "/admin/keys", headers=ADMIN, json={})
    assert missing.status_code == 400 and "error" in missing.json()


def test_requests_pagination_filters_and_lookup(admin_proxy: RunningProxy, fake: Fake) -> None:
    client = admin_proxy.client()
    for _ in range(5):
        client.chat.completions.create(model="fake-model", messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=MESSAGES)
    wait_rows(admin_proxy.database_url, 6)
    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = httpx.get(admin_proxy.root + "/admin/requests", headers=ADMIN,
                         params=params).json()
        seen += [row["request_id"] for row in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6
    rejected = httpx.get(admin_proxy.root + "/admin/requests", headers=ADMIN,
                         params={"status": "rejected"}).json()["data"]
    assert [row["requested_model"] for row in rejected] == ["nope"]
    one = httpx.get(admin_proxy.root + f"/admin/requests/{seen[0]}", headers=ADMIN).json()
    assert one["request_id"] == seen[0]
    assert httpx.get(admin_proxy.root + "/admin/requests/req_x", headers=ADMIN).status_code == 404
    bad = httpx.get(admin_proxy.root + "/admin/requests", headers=ADMIN,
                    params={"cursor": "!!!"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"
    assert httpx.get(admin_proxy.root + "/admin/requests", headers=ADMIN,
                     params={"limit": 0}).status_code == 400


def test_stats_totals_match_the_ledger_and_count_savings(admin_proxy: RunningProxy) -> None:
    client = admin_proxy.client()
    for level in ("L0",) * 5 + ("L2",) * 5:
        client.chat.completions.create(model="fake-model", messages=MESSAGES,
                                       extra_headers={"X-Sprout-Directive": level})
    client.chat.completions.create(model="fake-model", extra_headers={"X-Sprout-Directive": "L1"},
                                   messages=[{"role": "user", "content": "Write a poem."}])
    ledger = wait_rows(admin_proxy.database_url, 11)
    stats = httpx.get(admin_proxy.root + "/admin/stats", headers=ADMIN,
                      params={"group_by": "level"}).json()
    groups = {g["group"]: g for g in stats["groups"]}
    assert set(groups) == {"L0", "L1", "L2"} and groups["L2"]["requests"] == 5
    # One L1 row: too few to know the class's mean at L1, so no saving is claimed for it.
    l1 = groups["L1"]
    assert l1["saved_vs_l0_g_co2e"] == 0
    assert l1["not_assessed_g_co2e"] == pytest.approx(l1["operational_g_co2e"]
                                                      + l1["embodied_g_co2e"])
    assert sum(g["energy_j"] for g in groups.values()) == pytest.approx(
        sum(r["energy_j"] for r in ledger))
    assert groups["L0"]["saved_vs_l0_g_co2e"] == 0
    ledger = [r for r in ledger if r["directive_level"] != "L1"]
    # The stated method, recomputed from the rows: L2 carbon x (mean L0 J / mean L2 J - 1).
    def mean_j(level: str) -> float:
        chosen = [r["energy_j"] for r in ledger if r["directive_level"] == level]
        return sum(chosen) / len(chosen)

    l2_carbon = sum(r["operational_g_co2e"] + r["embodied_g_co2e"] for r in ledger
                    if r["directive_level"] == "L2")
    assert groups["L2"]["saved_vs_l0_g_co2e"] == pytest.approx(
        l2_carbon * (mean_j("L0") / mean_j("L2") - 1))
    assert "counterfactual" in stats["saved_method"]
    total = httpx.get(admin_proxy.root + "/admin/stats", headers=ADMIN).json()["groups"]
    assert total[0]["requests"] == 11 and total[0]["group"] is None
    for group_by in ("key", "pool", "model", "class", "hour"):
        answer = httpx.get(admin_proxy.root + "/admin/stats", headers=ADMIN,
                           params={"group_by": group_by})
        assert answer.status_code == 200 and answer.json()["groups"]
    bad = httpx.get(admin_proxy.root + "/admin/stats", headers=ADMIN,
                    params={"group_by": "colour"})
    assert bad.status_code == 400 and "error" in bad.json()


def test_pools_directives_optimiser_and_evaluations(admin_proxy: RunningProxy) -> None:
    root = admin_proxy.root
    (pool,) = httpx.get(root + "/admin/pools", headers=ADMIN).json()
    assert pool["name"] == "fakes" and pool["ci_source"] == "static"
    assert set(pool["energy"]) == {"metered_j", "attributed_j", "idle_j"}
    assert pool["replica_share"] == pool["max_concurrency"]  # the only replica
    assert pool["circuit_breakers"] == [{"backend": pool["backends"][0], "state": "closed",
                                         "consecutive_failures": 0}]
    levels = httpx.get(root + "/admin/directives", headers=ADMIN).json()
    assert [d["level"] for d in levels] == ["L0", "L1", "L2"]
    solved = httpx.post(root + "/admin/optimiser/solve", headers=ADMIN).json()
    assert solved["status"] == "cold_start" and "cold start" in solved["allocation"]["reason"]
    history = httpx.get(root + "/admin/optimiser", headers=ADMIN).json()
    assert history["runs"] and "verdicts" in history["runs"][0]["inputs"]
    assert httpx.get(root + "/admin/evaluations", headers=ADMIN).json()["evaluations"] == []
    refused = httpx.post(root + "/admin/evaluations", headers=ADMIN)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "evaluator_not_configured"


def test_directive_catalogue_can_be_replaced_and_persists(start_proxy, fake: Fake,
                                                          pg_url: str) -> None:
    proxy = start_proxy([fake_pool(fake)], pg_url)
    root = proxy.root
    new = [{"id": "L0", "text": None}, {"id": "terse", "text": "Answer in one sentence."}]
    answer = httpx.put(root + "/admin/directives", headers=ADMIN, json=new).json()
    assert [level["level"] for level in answer["levels"]] == ["L0", "terse"]
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="fake-model", messages=MESSAGES, extra_headers={"X-Sprout-Directive": "terse"})
    assert raw.headers["x-sprout-directive"] == "terse"
    assert fake.app.stats.bodies[-1]["messages"][0]["content"] == "Answer in one sentence."
    invalid = httpx.put(root + "/admin/directives", headers=ADMIN,
                        json=[{"id": "x", "text": "first must be no directive"}])
    assert invalid.status_code == 400 and invalid.json()["error"]["code"] == "invalid_catalogue"
    proxy.stop()
    restarted = start_proxy([fake_pool(fake)], pg_url)  # the catalogue survives a restart
    levels = httpx.get(restarted.root + "/admin/directives", headers=ADMIN).json()
    assert [level["level"] for level in levels] == ["L0", "terse"]
    deadline = time.monotonic() + 10
    while True:  # the leader's sampler records each meter's state on its first tick
        (pool,) = httpx.get(restarted.root + "/admin/pools", headers=ADMIN).json()
        if pool["devices"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    (device,) = pool["devices"]  # the scripted upstream has no /metrics/energy: it says why
    assert device["available"] is False and device["reason"]
    key = httpx.post(restarted.root + "/admin/keys", headers=ADMIN,
                     json={"name": "router", "policy": {"routing_lambda": 0.7}}).json()
    assert key["policy"]["routing_lambda"] == 0.7
