"""The job scheduler (APScheduler's asyncio scheduler, in the proxy's own event loop)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler

Job = Callable[[], Awaitable[object]]


def start_scheduler(jobs: list[tuple[str, Job, float]],
                    running: set[str] | None = None) -> AsyncIOScheduler:
    """Run each (name, job, interval_s) within a second, then every interval; no overlaps.

    The jobs keep distinct phases of the second (`stagger_s`), in the list's order from the
    first at once, so they do not all hold the GIL with their database calls at one moment.

    `running` holds the names of the jobs running at any moment (the loop watch names them
    when the loop stalls).
    """
    # APScheduler logs every run at INFO; the health probe runs every few seconds. Job failures
    # are still logged (WARNING and above), and each job logs its own outcome.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    scheduler = AsyncIOScheduler(timezone=UTC)
    now = datetime.now(UTC)
    for index, (name, job, interval_s) in enumerate(jobs):
        # Each job first runs within a second of start-up, at its own phase of the second,
        # and keeps it (every run is the previous one plus the interval): jobs of 1 s, 2 s
        # and 10 s started together would otherwise fire together for ever, and the loop
        # watch saw the loop stall 20-34 ms whenever four of them ran their database calls
        # at the same moment.
        first = now + timedelta(seconds=stagger_s(index, len(jobs), interval_s))
        scheduler.add_job(
            job if running is None else _tracked(name, job, running), "interval",
            seconds=interval_s, id=name, next_run_time=first, max_instances=1, coalesce=True,
            misfire_grace_time=max(1, int(interval_s)),
        )
    scheduler.start()
    return scheduler


def stagger_s(index: int, count: int, interval_s: float) -> float:
    """The phase of job `index` of `count`: spread evenly over a second (or its interval)."""
    return index / max(count, 1) * min(interval_s, 1.0)


def _tracked(name: str, job: Job, running: set[str]) -> Job:
    async def run() -> object:
        running.add(name)
        try:
            return await job()
        finally:
            running.discard(name)

    return run
