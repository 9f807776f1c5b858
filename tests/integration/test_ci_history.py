"""A live provider has no past: the leader's recorded history makes clean hours visible."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import create_engine, insert, select

from proxy.accounting.db import normalise_url
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.tables import ci_readings, evaluations, optimiser_runs
from proxy.fakes.grid_api import EM_TOKEN
from tests.conftest import MASTER_KEY
from tests.integration.test_evaluator import _capturing_proxy, _table, _traffic, judged_fake
from tests.integration.test_grid_providers import grid

__all__ = ["grid", "judged_fake"]  # fixtures shared with the evaluator's and grid tests


def _seed(database_url: str, now: datetime) -> None:
    """Three dirty days as the leader recorded them, then a dip: 300 two hours ago, 200 one
    hour ago. The last evaluation ran ten hours ago (past the 6 h grace, before 72 h)."""
    upgrade_to_head(database_url)
    readings = [{"region": "", "read_at": now - timedelta(hours=h), "g_per_kwh": 400.0,
                 "source": "electricitymaps:DE:direct"} for h in range(72, 2, -1)]
    readings += [{"region": "", "read_at": now - timedelta(hours=2), "g_per_kwh": 300.0,
                  "source": "electricitymaps:DE:direct"},
                 {"region": "", "read_at": now - timedelta(hours=1), "g_per_kwh": 200.0,
                  "source": "electricitymaps:DE:direct"}]
    engine = create_engine(normalise_url(database_url))
    with engine.begin() as connection:
        connection.execute(insert(ci_readings), readings)
        connection.execute(insert(evaluations).values(
            evaluation_id="eval_earlier", started_at=now - timedelta(hours=10),
            finished_at=now - timedelta(hours=10), status="done", trigger="schedule",
            judge_model="judge-model", levels="L0,L1,L2", planned_prompts=0, judged_prompts=0,
            failed_prompts=0, sample_ids_json="[]"))
    engine.dispose()


@pytest.mark.postgres
def test_the_evaluator_runs_on_a_clean_hour_and_the_optimiser_sees_the_recorded_range(
        start_proxy, judged_fake, grid, pg_url: str) -> None:
    app, root = grid
    app.value = 210.0  # now: below the trailing mean, and a local minimum of CI * e^(0.029 h)
    _seed(pg_url, datetime.now(UTC))
    proxy = _capturing_proxy(
        start_proxy, judged_fake, pg_url, evaluator_judge_model="judge-model",
        evaluator_interval_s=1.0, carbon_live_provider="electricitymaps", carbon_zone="DE",
        electricitymaps_token=EM_TOKEN, electricitymaps_base_url=root + "/v3",
        carbon_refresh_s=0.5)
    _traffic(proxy, 3)  # prompts to evaluate (the master key's are captured here)
    deadline = time.monotonic() + 30
    while not [e for e in _table(pg_url, evaluations) if e["evaluation_id"] != "eval_earlier"]:
        assert time.monotonic() < deadline, "the evaluator never saw the clean hour"
        time.sleep(0.3)
    recorded = _table(pg_url, ci_readings)
    live = [r for r in recorded if r["read_at"] > datetime.now(UTC) - timedelta(minutes=5)]
    assert live and {r["g_per_kwh"] for r in live} == {210.0}  # the leader records each refresh
    assert all(r["source"].startswith("electricitymaps:DE") for r in live)

    solved = httpx.post(proxy.root + "/admin/optimiser/solve",
                        headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert solved.status_code == 200
    engine = create_engine(normalise_url(pg_url))
    with engine.connect() as connection:
        run = connection.execute(select(optimiser_runs).order_by(
            optimiser_runs.c.ran_at.desc()).limit(1)).one()
    engine.dispose()
    # The live provider knows only "now" (210): the range comes from the recorded history.
    assert (run.ci_min_g_per_kwh, run.ci_max_g_per_kwh) == (200.0, 400.0)
    assert run.ci_g_per_kwh == 210.0
