"""The job scheduler (APScheduler's asyncio scheduler, in the proxy's own event loop)."""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from proxy.jobs.reoptimise import Reoptimiser


def start_scheduler(reoptimiser: Reoptimiser, interval_s: float) -> AsyncIOScheduler:
    """Re-optimise now and then every `interval_s`; overlapping runs are skipped."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        reoptimiser.run_once, "interval", seconds=interval_s, id="reoptimise",
        next_run_time=datetime.now(UTC), max_instances=1, coalesce=True,
        misfire_grace_time=max(1, int(interval_s)),
    )
    scheduler.start()
    return scheduler
