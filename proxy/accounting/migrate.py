"""Run the Alembic migrations programmatically (migrate-before-start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from proxy.accounting.db import normalise_url

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at this project's migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade_to_head(database_url: str) -> None:
    """Create or upgrade the schema."""
    command.upgrade(alembic_config(database_url), "head")
