"""The offline evaluator against real processes: proxy, scripted upstream and scripted judge."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import create_engine, insert, select

from evaluator.generator import HTTPGenerator
from evaluator.run import EVALUATOR_LOCK_KEY, EvaluationRun, RunOptions
from proxy.accounting.db import normalise_url
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.tables import (
    evaluation_answers,
    evaluations,
    judgments,
    predictors,
    prompt_samples,
    quality_scores,
)
from proxy.classify.classifier import classify
from proxy.fakes.upstream import ScriptedUpstream
from proxy.jobs.leader import LeaderLock
from tests.conftest import MASTER_KEY, Fake, fake_pool
from tests.support.ledger import rows, wait_rows
from tests.support.servers import ServerThread

MC = "Which gas is inert?\n(A): neon\n(B): oxygen\n(C): hydrogen\n(D): nitrogen #{}"
LEVEL_TOKENS = {"Always answer very briefly": 2, "Always answer briefly": 4}


@pytest.fixture
def judged_fake(request: pytest.FixtureRequest) -> Fake:
    app = ScriptedUpstream(("fake-model",), directive_tokens=LEVEL_TOKENS,
                           judge_models=("judge-model",))
    fake = Fake(app, ServerThread(app).start())
    request.addfinalizer(fake.server.stop)
    return fake


def _table(database_url: str, table) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    engine = create_engine(normalise_url(database_url))
    with engine.connect() as connection:
        found = [dict(r._mapping) for r in connection.execute(select(table))]
    engine.dispose()
    return found


def _capturing_proxy(start_proxy, fake: Fake, database_url: str, **extra):  # type: ignore[no-untyped-def]
    pool = fake_pool(fake, models=["fake-model", "judge-model"])
    return start_proxy([pool], database_url, capture_master_key_prompts=True,
                       prompt_capture_rate=1.0, **extra)


def _traffic(proxy, count: int) -> None:  # type: ignore[no-untyped-def]
    client = proxy.client()
    for i in range(count):
        client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": MC.format(i)}])


def _run_once(proxy, database_url: str, *extra: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    env["PROXY_MASTER_KEY"] = MASTER_KEY
    return subprocess.run(
        [sys.executable, "-m", "evaluator", "run-once", "--proxy-url", proxy.url,
         "--database-url", database_url, "--judge-model", "judge-model", "--seed", "1", *extra],
        capture_output=True, text=True, env=env, timeout=120)


def test_run_once_scores_levels_counts_its_traffic_and_steers_the_optimiser(
    start_proxy, judged_fake: Fake, pg_url: str
) -> None:
    proxy = _capturing_proxy(start_proxy, judged_fake, pg_url, optimiser_interval_s=0.3,
                             optimiser_min_verdicts=5)
    _traffic(proxy, 8)
    wait_rows(pg_url, 8)
    assert len(_table(pg_url, prompt_samples)) == 8
    sample = json.loads(_table(pg_url, prompt_samples)[0]["request_json"])
    assert sample["messages"][0]["role"] == "user"  # captured before any directive

    result = _run_once(proxy, pg_url)
    assert result.returncode == 0, result.stderr
    assert "8 judged, 0 failed of 8 prompts" in result.stdout
    assert "8/8 prompts" in result.stderr  # the progress bar

    verdicts = _table(pg_url, judgments)
    assert len(verdicts) == 8 and {v["winner_level"] for v in verdicts} == {"L2"}
    assert all(json.loads(v["answer_chars_json"])["L0"] > json.loads(
        v["answer_chars_json"])["L2"] for v in verdicts)
    assert {v["position_order"] for v in verdicts} != {"L0,L1,L2"}  # shuffled
    (evaluation,) = _table(pg_url, evaluations)
    assert evaluation["status"] == "done" and evaluation["judged_prompts"] == 8
    scores = {(s["task_class"], s["level"]): s for s in _table(pg_url, quality_scores)}
    assert scores[(classify(MC), "L2")]["q"] == 1.0 and scores[("*", "L2")]["judged"] == 8
    assert _table(pg_url, evaluation_answers) == []  # answers are not kept after the run

    ledger = wait_rows(pg_url, 8 + 8 * 4)
    evaluator_rows = [r for r in ledger if r["is_evaluator"]]
    assert len(evaluator_rows) == 32  # 3 levels + 1 judge call per prompt, all counted
    assert sorted({r["directive_level"] for r in evaluator_rows}) == ["L0", "L1", "L2", "off"]
    assert len(_table(pg_url, prompt_samples)) == 8  # evaluator traffic is never captured

    # The optimiser's next solve uses the verdicts: this kind of prompt now gets L2.
    deadline = time.monotonic() + 10
    while True:
        raw = proxy.client().chat.completions.with_raw_response.create(
            model="fake-model", messages=[{"role": "user", "content": MC.format(99)}])
        if raw.headers["x-sprout-directive"] == "L2":
            break
        assert time.monotonic() < deadline, "the allocation did not follow the scores"
        time.sleep(0.2)


def test_unreadable_verdicts_are_recorded_not_guessed(start_proxy, judged_fake, pg_url) -> None:
    proxy = _capturing_proxy(start_proxy, judged_fake, pg_url)
    _traffic(proxy, 3)
    wait_rows(pg_url, 3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    env["PROXY_MASTER_KEY"] = MASTER_KEY
    result = subprocess.run(
        [sys.executable, "-m", "evaluator", "run-once", "--proxy-url", proxy.url,
         "--database-url", pg_url, "--judge-model", "fake-model"],  # answers "tok0 tok1 ..."
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 5 and "0 judged, 3 failed" in result.stdout
    assert "nothing could be judged" in result.stderr
    verdicts = _table(pg_url, judgments)
    assert {v["winner_level"] for v in verdicts} == {None}
    assert {v["error"] for v in verdicts} == {
        "no answer label among the judge's log-probabilities; then unreadable verdict"}


def test_a_stopped_run_resumes_without_asking_twice(start_proxy, judged_fake, pg_url) -> None:
    proxy = _capturing_proxy(start_proxy, judged_fake, pg_url)
    _traffic(proxy, 4)
    wait_rows(pg_url, 4)
    engine = create_engine(normalise_url(pg_url))
    options = RunOptions(levels=("L0", "L1", "L2"), judge_model="judge-model", seed=3)

    class Crash(Exception):
        pass

    def crash_after_two(done: int, _total: int) -> None:
        if done == 2:
            raise Crash

    async def first() -> None:
        generator = HTTPGenerator(proxy.url, MASTER_KEY)
        try:
            await EvaluationRun(engine, generator, options, progress=crash_after_two).run()
        finally:
            await generator.aclose()

    with pytest.raises(Crash):
        asyncio.run(first())
    assert _table(pg_url, evaluations)[0]["status"] == "running"
    assert len(_table(pg_url, judgments)) == 2

    result = _run_once(proxy, pg_url)  # resumes the same evaluation
    assert result.returncode == 0 and "2 judged" not in result.stdout
    (evaluation,) = _table(pg_url, evaluations)
    assert evaluation["status"] == "done" and evaluation["judged_prompts"] == 4
    ledger = wait_rows(pg_url, 4 + 4 * 4)
    assert sum(r["is_evaluator"] for r in ledger) == 16  # nothing generated twice
    engine.dispose()


def test_retention_cleanup_and_the_lock(start_proxy, judged_fake, pg_url) -> None:
    upgrade_to_head(pg_url)
    engine = create_engine(normalise_url(pg_url))
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(insert(prompt_samples), [
            {"sample_id": sid, "captured_at": at, "endpoint": "chat", "model": "fake-model",
             "task_class": "open/s", "request_json": "{}"}
            for sid, at in [("old", now - timedelta(days=8)), ("new", now - timedelta(days=1))]])
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    cleanup = subprocess.run([sys.executable, "-m", "evaluator", "cleanup", "--database-url",
                              pg_url], capture_output=True, text=True, env=env, timeout=60)
    assert cleanup.returncode == 0 and "deleted 1" in cleanup.stdout
    assert [s["sample_id"] for s in _table(pg_url, prompt_samples)] == ["new"]

    proxy = _capturing_proxy(start_proxy, judged_fake, pg_url)
    holder = LeaderLock(engine, key=EVALUATOR_LOCK_KEY)
    assert holder.is_leader()
    try:
        busy = _run_once(proxy, pg_url)
        assert busy.returncode == 3 and "another evaluation" in busy.stderr
    finally:
        holder.release()
    engine.dispose()


def test_scheduled_job_runs_in_one_replica_at_a_time(start_proxy, judged_fake, pg_url) -> None:
    settings = {"evaluator_judge_model": "judge-model", "evaluator_interval_s": 0.3,
                "evaluator_max_idle_h": 0, "evaluator_grace_h": 0}
    replicas = [_capturing_proxy(start_proxy, judged_fake, pg_url, **settings)
                for _ in range(2)]
    _traffic(replicas[0], 3)
    deadline = time.monotonic() + 20
    while len([e for e in _table(pg_url, evaluations) if e["status"] == "done"]) < 3:
        assert time.monotonic() < deadline, "the scheduled evaluator did not run"
        time.sleep(0.2)
    done = sorted((e for e in _table(pg_url, evaluations) if e["status"] == "done"),
                  key=lambda e: e["started_at"])
    for earlier, later in itertools.pairwise(done):
        assert later["started_at"] >= earlier["finished_at"]  # never two at once
    assert {e["trigger"] for e in done} == {"schedule"}
    assert any(r["is_evaluator"] for r in rows(pg_url))


def test_captured_responses_prompts_are_regenerated(start_proxy, judged_fake, pg_url) -> None:
    proxy = _capturing_proxy(start_proxy, judged_fake, pg_url)
    client = proxy.client()
    first = client.responses.create(model="fake-model", input=MC.format("r0"),
                                    instructions="Answer with the letter.")
    client.responses.create(model="fake-model", input=MC.format("r1"),
                            previous_response_id=first.id)
    wait_rows(pg_url, 2)
    samples = sorted(_table(pg_url, prompt_samples), key=lambda s: s["captured_at"])
    assert [s["endpoint"] for s in samples] == ["responses", "responses"]
    second = json.loads(samples[1]["request_json"])
    # Captured self-contained: the earlier turn inline, nothing to look up, nothing stored.
    assert "previous_response_id" not in second or second["previous_response_id"] is None
    assert second["store"] is False
    assert [item["role"] for item in second["input"]] == ["user", "assistant", "user"]

    result = _run_once(proxy, pg_url)
    assert result.returncode == 0, result.stderr
    assert "2 judged, 0 failed of 2 prompts" in result.stdout
    assert {v["winner_level"] for v in _table(pg_url, judgments)} == {"L2"}
    regenerated = [r for r in wait_rows(pg_url, 2 + 2 * 4) if r["is_evaluator"]
                   and r["endpoint"] == "responses"]
    assert len(regenerated) == 6  # 3 levels per prompt; the judge call is chat
    (continued,) = [b for b in judged_fake.app.stats.bodies
                    if "Always answer very briefly" in json.dumps(b)
                    and b["messages"][-1]["content"] == MC.format("r1")]
    # Inline, the earlier turn is this request's own input: the directive leads it, as in chat.
    assert [m["role"] for m in continued["messages"]] == ["system", "user", "assistant", "user"]


def test_the_evaluator_fits_and_publishes_a_predictor_that_another_replica_labels_with(
    start_proxy, pg_url: str, request: pytest.FixtureRequest
) -> None:
    """Learned classes end to end: run-once fits and publishes, a second replica (same
    PostgreSQL) picks the predictor up on its optimiser tick, labels requests with learned
    classes, solves over them, and /admin/optimiser shows the version and held-out accuracy."""
    app = ScriptedUpstream(("fake-model",), directive_tokens=LEVEL_TOKENS,
                           judge_models=("judge-model",), judge_prefers="marked")
    app.default.tokens = 60  # L0 answers well above L1's 4 and L2's 2: energy, not noise
    fake = Fake(app, ServerThread(app).start())
    request.addfinalizer(fake.server.stop)
    # A weak prior: each learned class is scored on its own few held-out verdicts.
    fast = {"optimiser_interval_s": 0.3, "optimiser_min_verdicts": 5,
            "optimiser_prior_strength": 1.0}
    capturing = _capturing_proxy(start_proxy, fake, pg_url, **fast)
    replica = start_proxy([fake_pool(fake, models=["fake-model", "judge-model"])], pg_url,
                          **fast)
    client = capturing.client()
    prompts = [f"[thorough] Explain the history of bridge {i} in depth." for i in range(12)]
    prompts += [f"Who built tower {i}?" for i in range(12)]
    for prompt in prompts:
        client.chat.completions.create(model="fake-model",
                                       messages=[{"role": "user", "content": prompt}])
    wait_rows(pg_url, len(prompts))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    env |= {"PROXY_MASTER_KEY": MASTER_KEY, "PROXY_EVALUATOR_PREDICTOR_MIN_VERDICTS": "20"}
    result = subprocess.run(
        [sys.executable, "-m", "evaluator", "run-once", "--proxy-url", capturing.url,
         "--database-url", pg_url, "--judge-model", "judge-model", "--seed", "1"],
        capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    verdicts = _table(pg_url, judgments)
    assert {v["winner_level"] for v in verdicts} == {"L0", "L2"}
    assert all(not v["task_class"].startswith("learned/") for v in verdicts)  # regex classes
    (published,) = _table(pg_url, predictors)
    assert published["verdicts"] == len(prompts)
    assert 0.0 <= published["heldout_accuracy"] <= 1.0

    headers = {"Authorization": f"Bearer {MASTER_KEY}"}
    deadline = time.monotonic() + 20
    while True:  # the replica's next optimiser tick loads it
        shown = httpx.get(replica.root + "/admin/optimiser", headers=headers).json()
        if shown["predictor"] and shown["predictor"]["in_force"]:
            break
        assert time.monotonic() < deadline, "the replica did not pick the predictor up"
        time.sleep(0.2)
    assert shown["predictor"]["version"] == published["version"]
    assert shown["predictor"]["heldout_accuracy"] == pytest.approx(
        published["heldout_accuracy"])
    assert shown["predictor"]["verdicts"] == len(prompts)

    # Requests through the replica carry learned classes in the ledger, and the LP solved
    # over them sends the short questions (always judged best at L2) to L2.
    deadline = time.monotonic() + 20
    while True:
        raw = replica.client().chat.completions.with_raw_response.create(
            model="fake-model", messages=[{"role": "user", "content": "Who built tower 3?"}])
        if raw.headers["x-sprout-directive"] == "L2":
            break
        assert time.monotonic() < deadline, "the allocation did not follow the learned classes"
        time.sleep(0.2)
    deadline = time.monotonic() + 10
    while not (found := [r for r in rows(pg_url) if r["request_id"] == raw.headers[
            "x-request-id"]]):
        assert time.monotonic() < deadline, "the request's ledger row was not written"
        time.sleep(0.1)
    assert found[0]["task_class"].startswith("learned/")
    solved = httpx.get(replica.root + "/admin/optimiser", headers=headers).json()
    assert any(name.startswith("learned/") for name in solved["allocation"]["rows"])
