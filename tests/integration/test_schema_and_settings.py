"""Migrations on both databases, `alembic check`, settings documentation, pool files, CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect

from proxy.accounting.db import normalise_url
from proxy.accounting.migrate import alembic_config, upgrade_to_head
from proxy.cli import build_parser
from proxy.config import Settings
from proxy.pools.config import load_pools_file
from proxy.pools.discovery import configured_pools

ROOT = Path(__file__).resolve().parents[2]


def _check_schema(url: str) -> None:
    upgrade_to_head(url)
    command.check(alembic_config(url))  # models and migrations agree
    engine = create_engine(normalise_url(url))
    inspector = inspect(engine)
    assert {"requests", "api_keys"} <= set(inspector.get_table_names())
    columns = {c["name"] for c in inspector.get_columns("requests")}
    assert {"energy_j", "ci_g_per_kwh", "operational_g_co2e", "directive_level",
            "task_class", "ttft_ms", "overhead_ms", "usage_estimated"} <= columns
    engine.dispose()
    command.downgrade(alembic_config(url), "base")
    upgrade_to_head(url)


def test_migrations_on_postgres(pg_url: str) -> None:
    _check_schema(pg_url)


def test_migrations_on_sqlite(tmp_path: Path) -> None:
    _check_schema(f"sqlite:///{tmp_path}/x.db")


def test_env_example_lists_every_setting() -> None:
    documented = set(re.findall(r"^PROXY_([A-Z0-9_]+)=", (ROOT / ".env.example").read_text(),
                                re.MULTILINE))
    fields = {name.upper() for name in Settings.model_fields}
    assert documented == fields


def test_env_example_loads_as_an_env_file(tmp_path: Path) -> None:
    settings = Settings(_env_file=ROOT / ".env.example")  # type: ignore[call-arg]
    assert settings.port == 8080 and settings.database_url.startswith("sqlite")
    assert settings.pools == [] and settings.master_key is None


def test_example_pools_file_loads() -> None:
    pools = load_pools_file(ROOT / "deploy" / "pools.example.yaml")
    assert [p.name for p in pools] == ["local-worker", "vllm-a100", "vllm-h100-k8s", "hosted"]
    assert pools[2].accounting.meter == "dcgm" and pools[2].accounting.device == "h100-node-7"
    assert pools[1].models[0].target == "meta-llama/Llama-3.1-8B-Instruct"
    assert pools[1].api_key is not None and "change-me" not in repr(pools[1])


def test_pools_from_env_json_and_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROXY_POOLS", '[{"name": "a", "base_urls": ["http://h:1/v1"], '
                                      '"models": ["m"]}]')
    settings = Settings(_env_file=None, upstream_url="http://h:2/v1")  # type: ignore[call-arg]
    assert [p.name for p in configured_pools(settings)] == ["a", "default"]
    clash = Settings(_env_file=None, pools=[{"name": "default", "base_urls": ["http://x/v1"]}],  # type: ignore[call-arg,list-item]
                     upstream_url="http://h:2/v1")
    with pytest.raises(ValueError, match="unique"):
        configured_pools(clash)


def test_bad_pools_file_names_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "pools.yaml"
    path.write_text("pools:\n  - name: x\n    kind: openai\n")
    with pytest.raises(ValueError, match="needs at least one base_url"):
        load_pools_file(path)


def test_cli_help_documents_every_option() -> None:
    result = subprocess.run([sys.executable, "-m", "proxy", "serve", "--help"],
                            capture_output=True, text=True, check=True)
    for option in ["--upstream", "--port", "--host", "--config", "--database-url",
                   "--model", "--no-migrate", "--log-level", "PROXY_MASTER_KEY"]:
        assert option in result.stdout
    top = subprocess.run([sys.executable, "-m", "proxy", "--help"], capture_output=True,
                         text=True, check=True)
    assert "serve" in top.stdout and "migrate" in top.stdout
    assert build_parser().parse_args(["serve", "--port", "9"]).port == 9


def test_quick_start_upstream_uses_the_configured_estimate_profile() -> None:
    settings = Settings(_env_file=None, upstream_url="http://h:1/v1",  # type: ignore[call-arg]
                        upstream_hardware="cpu")
    (pool,) = configured_pools(settings)
    assert pool.accounting.hardware == "cpu"
