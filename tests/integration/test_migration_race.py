"""Replicas that migrate at the same instant on an empty PostgreSQL all succeed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, text

from proxy.accounting.db import normalise_url
from proxy.accounting.migrate import alembic_config

# Each process imports first, then waits for a common instant, so the upgrades truly overlap
# (without the advisory lock one of them dies with UniqueViolation pg_type_typname_nsp_index).
RACER = """
import sys, time
from proxy.accounting.migrate import upgrade_to_head
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
upgrade_to_head(sys.argv[1])
"""


@pytest.mark.postgres
def test_four_processes_migrating_at_once_all_succeed(pg_url: str) -> None:
    start_at = time.time() + 6.0
    racers = [subprocess.Popen([sys.executable, "-c", RACER, pg_url, str(start_at)],
                               stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(racer.wait(timeout=120), racer.stderr.read() if racer.stderr else "")
               for racer in racers]
    assert [code for code, _ in results] == [0, 0, 0, 0], [err[-600:] for _, err in results]
    engine = create_engine(normalise_url(pg_url))
    with engine.connect() as connection:
        head = ScriptDirectory.from_config(alembic_config(pg_url)).get_current_head()
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() \
            == head
    engine.dispose()

