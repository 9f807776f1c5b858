"""Directives through the proxy; the optimiser job steering them from ledger and verdicts."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
import uuid
from datetime import UTC, datetime

import httpx
import openai
import pytest
from sqlalchemy import create_engine, insert, select

from proxy.accounting.db import normalise_url
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.tables import api_keys, judgments, optimiser_runs
from proxy.auth.keys import key_sha256
from proxy.classify.classifier import classify
from proxy.jobs.leader import LeaderLock
from tests.conftest import MASTER_KEY, Fake, fake_pool
from tests.support.ledger import wait_rows

MC = "Which gas is inert?\n(A): neon\n(B): oxygen\n(C): hydrogen\n(D): nitrogen"
BRIEF, VERY_BRIEF = "Always answer briefly", "Always answer very briefly"


def _judge(database_url: str, task_class: str, winner: str, count: int) -> None:
    """What the evaluator writes after a run: one verdict per judged prompt."""
    engine = create_engine(normalise_url(database_url))
    with engine.begin() as connection:
        connection.execute(insert(judgments), [
            {"judgment_id": uuid.uuid4().hex, "judged_at": datetime.now(UTC),
             "task_class": task_class, "levels": "L0,L1,L2", "winner_level": winner,
             "judge_model": "scripted-judge"} for _ in range(count)])
    engine.dispose()


def _runs(database_url: str) -> list[dict]:  # type: ignore[type-arg]
    engine = create_engine(normalise_url(database_url))
    with engine.connect() as connection:
        found = [dict(r._mapping) for r in connection.execute(
            select(optimiser_runs).order_by(optimiser_runs.c.ran_at))]
    engine.dispose()
    return found


def _wait(condition, timeout_s: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_the_scheduled_job_changes_the_allocation_and_responses_follow(
    start_proxy, fake: Fake, pg_url: str
) -> None:
    proxy = start_proxy([fake_pool(fake)], pg_url, optimiser_interval_s=0.3,
                        optimiser_min_verdicts=10)
    client = proxy.client()
    messages = [{"role": "system", "content": "You are a chemist."},
                {"role": "user", "content": MC}]

    first = client.chat.completions.with_raw_response.create(model="fake-model",
                                                             messages=messages)
    assert first.headers["x-sprout-directive"] == "L0"  # cold start: the safe policy
    assert fake.app.stats.bodies[-1]["messages"] == messages
    _wait(lambda: any(r["status"] == "cold_start" for r in _runs(pg_url)))
    assert "cold start" in _runs(pg_url)[0]["reason"]

    # The judge finds that, for this kind of prompt, the very brief answers are best.
    _judge(pg_url, classify(MC), "L2", 40)
    _wait(lambda: any(r["status"] == "optimal" for r in _runs(pg_url)))
    run = next(r for r in _runs(pg_url) if r["status"] == "optimal")
    allocation = json.loads(run["allocation_json"])
    assert allocation["rows"][classify(MC)] == pytest.approx([0, 0, 1], abs=1e-6)
    assert run["ci_source"] == "static" and run["solve_ms"] > 0

    for _ in range(3):
        raw = client.chat.completions.with_raw_response.create(model="fake-model",
                                                               messages=messages)
        assert raw.headers["x-sprout-directive"] == "L2"
        sent = fake.app.stats.bodies[-1]["messages"]
        assert sent == [messages[0], {"role": "system", "content": VERY_BRIEF}, messages[1]]
    rows = wait_rows(pg_url, 4)
    assert [r["directive_level"] for r in rows] == ["L0", "L2", "L2", "L2"]
    assert rows[-1]["directive_hash"] == hashlib.sha256(VERY_BRIEF.encode()).hexdigest()
    assert rows[-1]["task_class"] == classify(MC)


def test_client_header_key_policy_and_exemptions(start_proxy, fake: Fake, pg_url: str) -> None:
    upgrade_to_head(pg_url)
    engine = create_engine(normalise_url(pg_url))
    with engine.begin() as connection:
        connection.execute(insert(api_keys).values(
            key_id="key_optout", key_sha256=key_sha256("sk-optout"), name="opted out",
            created_at=datetime.now(UTC), policy_json=json.dumps({"directive": "off"})))
    engine.dispose()
    proxy = start_proxy([fake_pool(fake)], pg_url)
    client = proxy.client()
    user = [{"role": "user", "content": "Name three primary colours."}]

    def header_of(**kwargs):  # type: ignore[no-untyped-def]
        return client.chat.completions.with_raw_response.create(
            model="fake-model", messages=user, **kwargs).headers["x-sprout-directive"]

    assert header_of(extra_headers={"X-Sprout-Directive": "L1"}) == "L1"
    assert fake.app.stats.bodies[-1]["messages"][0] == {"role": "system", "content": BRIEF}
    assert header_of(extra_headers={"X-Sprout-Directive": "off"}) == "off"
    assert fake.app.stats.bodies[-1]["messages"] == user
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert header_of(tools=tools) == "exempt"
    assert header_of(response_format={"type": "json_object"}) == "exempt"
    assert header_of(tools=tools, extra_headers={"X-Sprout-Directive": "L2"}) == "L2"
    with pytest.raises(openai.BadRequestError) as caught:
        header_of(extra_headers={"X-Sprout-Directive": "shorter"})
    assert caught.value.body["param"] == "X-Sprout-Directive"  # type: ignore[index]

    opted_out = proxy.client(api_key="sk-optout").chat.completions.with_raw_response.create(
        model="fake-model", messages=user)
    assert opted_out.headers["x-sprout-directive"] == "off"

    completion = client.completions.with_raw_response.create(
        model="fake-model", prompt="Q: 2+2?", extra_headers={"X-Sprout-Directive": "L2"})
    assert completion.headers["x-sprout-directive"] == "L2"
    assert fake.app.stats.bodies[-1]["prompt"] == f"{VERY_BRIEF}\n\nQ: 2+2?"
    embedded = client.embeddings.with_raw_response.create(
        model="fake-model", input="x", extra_headers={"X-Sprout-Directive": "L2"})
    assert "x-sprout-directive" not in embedded.headers

    rows = wait_rows(pg_url, 9)
    assert [(r["directive_level"], r["status"]) for r in rows] == [
        ("L1", "ok"), ("off", "ok"), ("exempt", "ok"), ("exempt", "ok"), ("L2", "ok"),
        (None, "rejected"), ("off", "ok"), ("L2", "ok"), (None, "ok")]
    assert rows[6]["api_key_id"] == "key_optout"
    assert rows[-1]["endpoint"] == "embeddings"


def test_one_leader_among_replicas_and_followers_publish_its_allocation(
    start_proxy, start_fake, pg_url: str
) -> None:
    upgrade_to_head(pg_url)
    engine = create_engine(normalise_url(pg_url))
    first, second = LeaderLock(engine, cache_s=0), LeaderLock(engine, cache_s=0)
    assert first.is_leader() and not second.is_leader()
    assert first.is_leader()  # still held
    first.release()
    assert second.is_leader()
    second.release()
    engine.dispose()

    fake = start_fake()
    _judge(pg_url, classify(MC), "L2", 40)
    replicas = [start_proxy([fake_pool(fake)], pg_url, optimiser_interval_s=0.3,
                            optimiser_min_verdicts=10) for _ in range(2)]
    replicas[0].client().chat.completions.create(  # some traffic for the ledger
        model="fake-model", messages=[{"role": "user", "content": MC}])
    wait_rows(pg_url, 1)

    def both_serve_l2() -> bool:
        headers = [httpx.post(r.url + "/chat/completions", headers={
            "authorization": f"Bearer {MASTER_KEY}"}, json={
            "model": "fake-model", "messages": [{"role": "user", "content": MC}]}
        ).headers["x-sprout-directive"] for r in replicas]
        return headers == ["L2", "L2"]

    _wait(both_serve_l2)
    time.sleep(1.0)
    runs = _runs(pg_url)
    gaps = [(b["ran_at"] - a["ran_at"]).total_seconds() for a, b in itertools.pairwise(runs)]
    assert min(gaps) > 0.15  # one writer at the interval, not two interleaved
