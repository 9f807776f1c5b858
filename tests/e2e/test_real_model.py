"""The whole Sprout loop live, on the real default model (SmolLM2-135M-Instruct, from PyPI).

Real parts only: the worker serving SmolLM2 with continuous batching, the proxy on
PostgreSQL, the evaluator's `run-once` with the log-probability judge (SmolLM2 judging its
own answers), the optimiser's LP. Kept small for CI: a handful of prompts, short answers.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import httpx
import openai
import pytest
from sqlalchemy import create_engine, insert

from proxy.accounting.db import normalise_url
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.tables import ci_readings, judgments
from tests.conftest import MASTER_KEY
from tests.integration.test_evaluator import _table
from tests.support.ledger import wait_rows

MODEL = "SmolLM2-135M-Instruct"
# Questions where SmolLM2 follows the brevity directives (measured greedy, 96 tokens at most:
# L0 / L1 / L2 completion tokens 87/59/52, 96/62/62, 96/18/18, 45/35/31, 39/8/8, 67/35/27).
# On other prompts it does not, and some answers grow: bench/live_directives.py reports the
# mean over a few hundred of Sprout's prompts.
PROMPTS = [
    "What is the boiling point of water?",
    "Who wrote Romeo and Juliet?",
    "What is the largest planet?",
    "Give me a synonym for happy.",
    "What is the chemical symbol for gold?",
    "Name a mammal that can fly.",
]
MAX_TOKENS = 96

# Generous limits: the first run downloads the model (93 MB) and loads it (about 20 s).
pytestmark = [pytest.mark.worker, pytest.mark.real_model, pytest.mark.timeout(480)]


def test_the_readme_snippet_gets_a_sensible_english_answer(start_proxy, smollm2_worker: str,
                                                           tmp_path) -> None:
    database_url = f"sqlite:///{tmp_path}/ledger.db"
    proxy = start_proxy([], database_url, upstream_url=smollm2_worker)
    client = proxy.client()
    assert [m.id for m in client.models.list()] == [MODEL]
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Why is the sky blue?"}],
        max_tokens=60, temperature=0)
    text = reply.choices[0].message.content or ""
    assert re.search(r"scatter|Rayleigh|wavelength", text), text
    assert not re.search(r"[\x00-\x08\x0b-\x1f]", text), "control bytes in the answer"
    (row,) = wait_rows(database_url, 1)
    assert row["completion_tokens"] == reply.usage.completion_tokens  # type: ignore[union-attr]


def _seed_clean_past(database_url: str) -> None:
    """Two clean days (100 g/kWh) recorded: the static 500 g/kWh now is a dirty hour."""
    upgrade_to_head(database_url)
    now = datetime.now(UTC)
    engine = create_engine(normalise_url(database_url))
    with engine.begin() as connection:
        connection.execute(insert(ci_readings), [
            {"region": "", "read_at": now - timedelta(hours=h), "g_per_kwh": 100.0,
             "source": "test:clean-past"} for h in range(48, 0, -1)])
    engine.dispose()


async def _ask_all(proxy, level: str | None) -> list[tuple[str, int]]:  # type: ignore[no-untyped-def]
    client = openai.AsyncOpenAI(base_url=proxy.url, api_key=MASTER_KEY)
    headers = {"x-sprout-directive": level} if level else {}

    async def one(prompt: str) -> tuple[str, int]:
        raw = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": prompt}],
            max_tokens=MAX_TOKENS, temperature=0, extra_headers=headers)
        reply = raw.parse()
        return raw.headers["x-sprout-directive"], reply.usage.completion_tokens  # type: ignore[union-attr]

    try:
        return await asyncio.gather(*(one(p) for p in PROMPTS))
    finally:
        await client.close()


def test_captured_prompts_to_verdicts_to_shorter_answers_at_a_dirty_hour(
        start_proxy, smollm2_worker: str, pg_url: str) -> None:
    _seed_clean_past(pg_url)
    proxy = start_proxy([], pg_url, upstream_url=smollm2_worker, request_timeout_s=400,
                        capture_master_key_prompts=True, prompt_capture_rate=1.0,
                        carbon_static_g_per_kwh=500.0, carbon_refresh_s=0.5,
                        optimiser_interval_s=0.5,
                        optimiser_min_verdicts=len(PROMPTS) - 1,  # age-weighted: 5.99
                        optimiser_xi=0.5)

    baseline = asyncio.run(_ask_all(proxy, None))  # cold start: everything at L0, captured
    assert {level for level, _ in baseline} == {"L0"}
    wait_rows(pg_url, len(PROMPTS))

    env = {k: v for k, v in os.environ.items() if not k.startswith("PROXY_")}
    env["PROXY_MASTER_KEY"] = MASTER_KEY
    result = subprocess.run(
        [sys.executable, "-m", "evaluator", "run-once", "--proxy-url", proxy.url,
         "--database-url", pg_url, "--judge-model", MODEL, "--seed", "1"],
        capture_output=True, text=True, env=env, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(PROMPTS)} judged, 0 failed" in result.stdout  # SmolLM2 always gives one
    verdicts = _table(pg_url, judgments)
    assert all(v["winner_level"] in ("L0", "L1", "L2") for v in verdicts)
    assert all(v["error"] is None for v in verdicts)

    deadline = time.monotonic() + 60
    while True:  # the optimiser's next solve: verdicts in, a dirty hour
        served = asyncio.run(_ask_all(proxy, None))
        if any(level in ("L1", "L2") for level, _ in served):
            break
        if time.monotonic() > deadline:
            solves = httpx.get(proxy.url.removesuffix("/v1") + "/admin/optimiser",
                               headers={"authorization": f"Bearer {MASTER_KEY}"}).json()
            ledger = [(r["directive_level"], r["is_evaluator"], r["completion_tokens"],
                       r["energy_j"], r["energy_method"], r["latency_ms"])
                      for r in wait_rows(pg_url, 1)]
            pytest.fail(f"the allocation never left L0: {solves['allocation']['reason']}; "
                        f"{solves['runs'][0]['inputs']['terms'][-1]}; ledger {ledger}")
    shorter = [(tokens, base) for (level, tokens), (_, base) in zip(served, baseline,
                                                                    strict=True)
               if level in ("L1", "L2")]
    assert sum(t for t, _ in shorter) < sum(b for _, b in shorter), (served, baseline)
