"""The job scheduler: jobs start within a second, each on a phase of its own, and keep it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from proxy.jobs.scheduler import start_scheduler


async def _idle() -> None:
    return None


def test_jobs_start_within_a_second_on_distinct_phases_and_keep_them() -> None:
    """Jobs of 1 s, 2 s and 10 s started together fired together for ever; the loop watch
    caught 20-34 ms stalls whenever four of them called the database at the same moment."""
    jobs = [("heartbeat", _idle, 1.0), ("keys", _idle, 2.0), ("key-usage", _idle, 1.0),
            ("pool-health", _idle, 10.0), ("reoptimise", _idle, 300.0)]

    async def scenario() -> dict[str, tuple[float, float]]:
        began = datetime.now(UTC)
        scheduler = start_scheduler(jobs)
        try:
            found = {}
            for name, _, _ in jobs:
                job = scheduler.get_job(name)
                first = job.next_run_time
                later = job.trigger.get_next_fire_time(first, first)
                found[name] = ((first - began).total_seconds(), (later - first).total_seconds())
            return found
        finally:
            scheduler.shutdown(wait=False)

    found = asyncio.run(scenario())
    assert found["heartbeat"][0] < 0.1  # the first job of the list runs at once
    assert all(0 <= first < 1.0 for first, _ in found.values())
    # Each run is the previous one plus the interval: the phase holds.
    assert [after for _, after in found.values()] == [interval for _, _, interval in jobs]
    phases = [round(first % 1.0, 3) for first, _ in found.values()]
    assert len(set(phases)) == len(jobs)
    assert min(abs(a - b) for i, a in enumerate(phases) for b in phases[i + 1:]) >= 0.15
