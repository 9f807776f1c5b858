"""`sprout-proxy`: serve the proxy, or migrate its database."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from proxy.config import Settings

_EPILOG = """\
Every option can also be set in the environment (or a .env file) with the PROXY_ prefix, e.g.
PROXY_MASTER_KEY, PROXY_DATABASE_URL, PROXY_POOLS_FILE, PROXY_UPSTREAM_URL; .env.example lists
them all. Command-line options win over the environment.

The master key comes from PROXY_MASTER_KEY. If it is unset, `serve` generates one, saves it to
var/master-key (mode 600) and prints it.

Examples:
  sprout-proxy serve --upstream http://127.0.0.1:8000/v1 --port 8080
  sprout-proxy serve --config pools.yaml --database-url postgresql+psycopg://u:p@db/sprout
  sprout-proxy migrate --database-url postgresql+psycopg://u:p@db/sprout
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line; `--help` documents every option."""
    parser = argparse.ArgumentParser(
        prog="sprout-proxy",
        description="OpenAI-compatible proxy that cuts LLM inference carbon and accounts for it.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="run the proxy", epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1; PROXY_HOST)")
    serve.add_argument("--port", type=int, help="port to bind (default 8080; PROXY_PORT)")
    serve.add_argument(
        "--upstream", metavar="URL",
        help="quick start: one 'openai' pool in front of this OpenAI-compatible base URL "
             "(e.g. http://127.0.0.1:8000/v1; PROXY_UPSTREAM_URL)",
    )
    serve.add_argument(
        "--model", action="append", metavar="NAME",
        help="with --upstream: a model name it serves (repeatable); default: ask its /models",
    )
    serve.add_argument("--config", type=Path, metavar="FILE",
                       help="pools YAML file (PROXY_POOLS_FILE); see deploy/pools.example.yaml")
    serve.add_argument("--database-url", metavar="URL",
                       help="SQLAlchemy URL of the ledger database (default "
                            "sqlite:///./var/sprout.db; PROXY_DATABASE_URL)")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="proxy processes on this host sharing the port (default 1; "
                            "PROXY_WORKERS); one of them runs the fleet jobs")
    serve.add_argument("--no-migrate", action="store_true",
                       help="do not run migrations before start (PROXY_MIGRATE_ON_START=false)")
    serve.add_argument("--log-level", choices=["critical", "error", "warning", "info", "debug"],
                       help="log level (default info; PROXY_LOG_LEVEL)")

    migrate = commands.add_parser("migrate", help="create or upgrade the database schema")
    migrate.add_argument("--database-url", metavar="URL", help="database (PROXY_DATABASE_URL)")
    return parser


_CLI_FIELDS = ("host", "port", "upstream_url", "upstream_models", "pools_file", "database_url",
               "log_level", "workers")


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the environment, overridden by the options given."""
    overrides: dict[str, Any] = {}
    for option, field in [
        ("host", "host"), ("port", "port"), ("upstream", "upstream_url"),
        ("model", "upstream_models"), ("config", "pools_file"),
        ("database_url", "database_url"), ("log_level", "log_level"),
        ("workers", "workers"),
    ]:
        value = getattr(args, option, None)
        if value is not None:
            overrides[field] = value
    if getattr(args, "no_migrate", False):
        overrides["migrate_on_start"] = False
    return Settings(**overrides)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `sprout-proxy` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        print(f"sprout-proxy: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "alembic.runtime.plugins"):  # one line per call/plugin otherwise
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.root.level))
    if args.command == "migrate":
        from proxy.accounting.migrate import upgrade_to_head

        upgrade_to_head(settings.database_url)
        print("database is at the latest revision")
        return 0
    return _serve(settings)


def _serve(settings: Settings) -> int:
    import uvicorn

    from proxy.app import create_app
    from proxy.auth.keys import resolve_master_key
    from proxy.redact import redact_url

    generated = settings.master_key is None and not settings.master_key_file.exists()
    master = resolve_master_key(settings.master_key, settings.master_key_file, create=True)
    settings = settings.model_copy(update={"master_key": master})
    if settings.pools_file is not None and not settings.pools_file.exists():
        print(f"sprout-proxy: pools file not found: {settings.pools_file}", file=sys.stderr)
        return 2
    key_hint = _describe_key(master, settings.master_key_file, generated)
    print(f"sprout-proxy on http://{settings.host}:{settings.port}/v1  (master key: {key_hint}; "
          f"database: {redact_url(settings.database_url)})", flush=True)
    if settings.workers > 1:
        return _serve_workers(settings)
    uvicorn.run(create_app(settings), **_server_options(settings))
    return 0


def _server_options(settings: Settings) -> dict[str, Any]:
    """What uvicorn gets, for one process or several (the protocol travels to each)."""
    from proxy.server.options import server_options

    return {"host": settings.host, "port": settings.port, "log_level": settings.log_level,
            "access_log": False} | server_options(settings)


def _serve_workers(settings: Settings) -> int:
    """N processes on one socket: migrate once here, hand the settings over as PROXY_* vars."""
    import os

    import uvicorn

    if settings.migrate_on_start:
        from proxy.accounting.migrate import upgrade_to_head

        upgrade_to_head(settings.database_url)
    # The command line's options (the rest is in the environment already) and the master key.
    values = settings.model_dump(mode="json", include=set(_CLI_FIELDS))
    for name in _CLI_FIELDS:
        if name in settings.model_fields_set and values.get(name) is not None:
            value = values[name]
            os.environ[f"PROXY_{name.upper()}"] = (value if isinstance(value, str)
                                                   else json.dumps(value))
    if settings.master_key is not None:
        os.environ["PROXY_MASTER_KEY"] = settings.master_key.get_secret_value()
    os.environ["PROXY_MIGRATE_ON_START"] = "false"  # done above, once
    uvicorn.run("proxy.app:create_app_from_environment", factory=True,
                workers=settings.workers, **_server_options(settings))
    return 0


def _describe_key(key: SecretStr | None, key_file: Path, generated: bool) -> str:
    """A new user sees the generated key once; configured keys are only hinted at."""
    if key is None:
        return "none"
    value = key.get_secret_value()
    if generated:
        return f"{value} (saved in {key_file})"
    return value[:6] + "…" if len(value) > 12 else "set"
