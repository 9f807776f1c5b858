"""The job scheduler (APScheduler's asyncio scheduler, in the proxy's own event loop)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

Job = Callable[[], Awaitable[object]]


def start_scheduler(jobs: list[tuple[str, Job, float]],
                    running: set[str] | None = None) -> AsyncIOScheduler:
    """Run each (name, job, interval_s) now and then every interval; overlaps are skipped.

    `running` holds the names of the jobs running at any moment (the loop watch names them
    when the loop stalls).
    """
    # APScheduler logs every run at INFO; the health probe runs every few seconds. Job failures
    # are still logged (WARNING and above), and each job logs its own outcome.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    scheduler = AsyncIOScheduler(timezone=UTC)
    for name, job, interval_s in jobs:
        scheduler.add_job(
            job if running is None else _tracked(name, job, running), "interval",
            seconds=interval_s, id=name, next_run_time=datetime.now(UTC), max_instances=1,
            coalesce=True, misfire_grace_time=max(1, int(interval_s)),
        )
    scheduler.start()
    return scheduler


def _tracked(name: str, job: Job, running: set[str]) -> Job:
    async def run() -> object:
        running.add(name)
        try:
            return await job()
        finally:
            running.discard(name)

    return run
