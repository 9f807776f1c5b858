"""Admission: a pool's concurrency limit with a bounded wait queue; full means a fast 429."""

from __future__ import annotations

import asyncio

from proxy.errors import Overloaded


class Admission:
    """At most `max_concurrency` requests run; at most `max_queue` wait; the rest are refused."""

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.in_flight = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(max_concurrency)

    @property
    def load(self) -> float:
        """Share of the concurrency limit in use, counting waiters (for least-loaded choice)."""
        return (self.in_flight + self.waiting) / self.max_concurrency

    async def acquire(self, pool_name: str) -> None:
        """Wait for a slot, or raise `Overloaded` at once when the queue is full too."""
        if self._slots.locked() and self.waiting >= self.max_queue:
            raise Overloaded(
                f"pool {pool_name!r} is at capacity; retry shortly",
                code="pool_overloaded",
                headers={"retry-after": "1"},
            )
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.in_flight += 1

    def release(self) -> None:
        """Give the slot back (exactly once per successful `acquire`)."""
        self.in_flight -= 1
        self._slots.release()
