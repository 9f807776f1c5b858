"""Run the Alembic migrations programmatically (migrate-before-start), one process at a time.

Replicas that start together against an empty PostgreSQL would race their `CREATE TABLE`s (one
dies with `UniqueViolation ... pg_type_typname_nsp_index`), so `upgrade_to_head` holds a
session advisory lock around the upgrade: the first replica migrates, the others wait, then
find the schema at head and do nothing. SQLite serialises writers itself.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.pool import NullPool

from proxy.accounting.db import make_engine, normalise_url


def _script_location() -> Path:
    """The Alembic folder: `proxy.migrations` when installed, else the checkout's `migrations/`.

    A wheel (or an editable install) maps the top-level `migrations/` to `proxy.migrations`
    (setup.py); a bare checkout on `sys.path` has no such package, so fall back to the folder.
    """
    try:
        return Path(str(resources.files("proxy.migrations")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "migrations"


MIGRATIONS_DIR = _script_location()
# Any constant shared by all replicas, distinct from the jobs leader's; "sprmig" in ASCII.
MIGRATION_LOCK_KEY = 0x73_70_72_6D_69_67


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at this project's migrations and the given database."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", normalise_url(database_url).replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def upgrade_to_head(database_url: str) -> None:
    """Create or upgrade the schema (serialised across processes on PostgreSQL)."""
    config = alembic_config(database_url)
    engine = make_engine(database_url)
    if engine.dialect.name != "postgresql":
        engine.dispose()
        command.upgrade(config, "head")
        return
    locker = make_engine(database_url, poolclass=NullPool)
    try:
        with locker.connect() as connection:
            # Blocks until the replica that is migrating now has finished (or died).
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            connection.commit()
            try:
                command.upgrade(config, "head")
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"),
                                   {"key": MIGRATION_LOCK_KEY})
                connection.commit()
    finally:
        locker.dispose()
        engine.dispose()
