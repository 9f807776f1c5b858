"""`python -m evaluator run-once | cleanup`: the offline quality evaluator for operators and cron.

run-once regenerates a sample of captured prompts at every directive level through a running
proxy (marked as evaluator traffic in its ledger), has a judge model pick the best answer
without considering length, and writes verdicts and quality scores. It resumes a stopped run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import UTC, datetime, timedelta

from evaluator.generator import HTTPGenerator
from evaluator.run import EvaluationRun, RunOptions
from evaluator.sampling import delete_expired
from proxy.accounting.db import make_engine
from proxy.config import Settings
from proxy.directives.catalogue import Catalogue


def _bar(done: int, total: int) -> None:
    width = 30
    filled = int(width * done / total) if total else width
    sys.stderr.write(f"\r[{'#' * filled}{'-' * (width - filled)}] {done}/{total} prompts")
    sys.stderr.flush()
    if done == total:
        sys.stderr.write("\n")


def main(argv: list[str] | None = None) -> int:
    """Parse options and run."""
    parser = argparse.ArgumentParser(prog="python -m evaluator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    once = commands.add_parser("run-once", help="evaluate now (exit 3 if another run holds the "
                                                "lock, 4 if there are no captured prompts, "
                                                "5 if no prompt could be judged)")
    once.add_argument("--proxy-url", default=None,
                      help="the proxy's OpenAI base URL (default http://PROXY_HOST:PROXY_PORT/v1)")
    once.add_argument("--database-url", default=None, help="default PROXY_DATABASE_URL")
    once.add_argument("--judge-model", default=None, help="default PROXY_EVALUATOR_JUDGE_MODEL")
    once.add_argument("--judge-mode", choices=("auto", "logprobs", "text"), default=None,
                      help="default PROXY_EVALUATOR_JUDGE_MODE (auto)")
    once.add_argument("--max-prompts", type=int, default=None)
    once.add_argument("--time-budget-s", type=float, default=None)
    once.add_argument("--no-resume", action="store_true", help="start a new run even if one "
                                                               "was stopped")
    once.add_argument("--seed", type=int, default=None)
    clean = commands.add_parser("cleanup", help="delete captured prompts past retention")
    clean.add_argument("--database-url", default=None)
    args = parser.parse_args(argv)

    overrides = {"database_url": args.database_url} if args.database_url else {}
    settings = Settings(**overrides)
    engine = make_engine(settings.database_url)
    retention = timedelta(days=settings.prompt_retention_days)
    if args.command == "cleanup":
        with engine.begin() as connection:
            removed = delete_expired(connection, datetime.now(UTC), retention)
        print(f"deleted {removed} captured prompts older than {retention}")
        return 0

    judge_model = args.judge_model or settings.evaluator_judge_model
    if not judge_model:
        print("no judge model: pass --judge-model or set PROXY_EVALUATOR_JUDGE_MODEL",
              file=sys.stderr)
        return 2
    key = settings.master_key.get_secret_value() if settings.master_key else os.environ.get(
        "PROXY_MASTER_KEY", "")
    if not key and settings.master_key_file.exists():
        key = settings.master_key_file.read_text().strip()
    proxy_url = args.proxy_url or f"http://{settings.host}:{settings.port}/v1"
    chosen: dict[str, object] = {"judge_model": judge_model, "resume": not args.no_resume,
                                 "seed": args.seed}
    if args.judge_mode:
        chosen["judge_mode"] = args.judge_mode
    if args.max_prompts:
        chosen["max_prompts"] = args.max_prompts
    if args.time_budget_s:
        chosen["time_budget_s"] = args.time_budget_s
    options = RunOptions.from_settings(settings, Catalogue(settings.directive_levels).ids,
                                       "run-once", **chosen)

    async def go() -> int:
        generator = HTTPGenerator(proxy_url, key)
        try:
            summary = await EvaluationRun(engine, generator, options, progress=_bar).run()
        finally:
            await generator.aclose()
        if summary.status == "busy":
            print("another evaluation holds the lock; not starting", file=sys.stderr)
            return 3
        if summary.status == "nothing_to_do":
            print("no captured prompts to evaluate (keys must opt in to prompt capture)",
                  file=sys.stderr)
            return 4
        print(f"evaluation {summary.evaluation_id}: {summary.status}, {summary.judged} judged, "
              f"{summary.failed} failed of {summary.planned} prompts")
        if summary.failed and not summary.judged:
            print("nothing could be judged: see the judgments table's errors",
                  file=sys.stderr)
            return 5
        return 0

    try:
        return asyncio.run(go())
    finally:
        engine.dispose()


if __name__ == "__main__":
    raise SystemExit(main())
