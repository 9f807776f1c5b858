"""ResponsesRetention: the leader deletes stored responses past PROXY_RESPONSES_RETENTION_DAYS."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from proxy.accounting.responses_store import ResponseStore
from proxy.jobs.leader import LeaderLock

log = logging.getLogger(__name__)

# Reads already skip expired rows, so the clean-up only bounds the table's size: hourly is enough.
INTERVAL_S = 3600.0


class ResponsesRetention:
    """One delete per run, on the jobs leader only."""

    def __init__(self, store: ResponseStore, leader: LeaderLock,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._store = store
        self._leader = leader
        self._clock = clock

    async def run_once(self) -> int:
        """Delete what has expired; the number of responses removed."""
        if not await asyncio.to_thread(self._leader.is_leader):
            return 0
        removed = await asyncio.to_thread(self._store.delete_expired, self._clock())
        if removed:
            log.info("deleted %d stored responses past retention", removed)
        return removed
