"""Admission: a pool's concurrency limit with a bounded wait queue; full means a fast 429.

The limit is this replica's *share* of the pool's fleet-wide `max_concurrency`: the heartbeat
(`proxy/jobs/heartbeat.py`) divides it among the live replicas and calls `set_limit`, so N
replicas together never admit more than the configured limit. A share may be 0 (more
replicas than slots): requests then wait in the queue for a share.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib

from proxy.errors import Overloaded


def share(total: int, replicas_alive: int, index: int, offset: int = 0) -> int:
    """Replica `index`'s share of `total` slots among `replicas_alive` replicas (sums to total)."""
    count = max(1, replicas_alive)
    return total // count + (1 if (index + offset) % count < total % count else 0)


def filled_shares(total: int, caps: list[int | None]) -> list[int]:
    """`total` slots over replicas in order, one at a time, none past its cap (None: no cap).

    Every replica computes the same list, so the shares sum to min(total, sum of caps): a
    replica that cannot use its even share (its backends' shares are smaller) passes the rest
    on instead of losing it.
    """
    shares = [0] * len(caps)
    remaining, progress = total, True
    while remaining > 0 and progress:
        progress = False
        for index, cap in enumerate(caps):
            if remaining > 0 and (cap is None or shares[index] < cap):
                shares[index] += 1
                remaining -= 1
                progress = True
    return shares


class Admission:
    """At most `limit` requests run; at most `max_queue` wait; the rest are refused."""

    def __init__(self, max_concurrency: int, max_queue: int) -> None:
        self.max_concurrency = max_concurrency  # the fleet-wide figure, as configured
        self.max_queue = max_queue
        self.limit = max_concurrency  # this replica's share (all of it until told otherwise)
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    @property
    def waiting(self) -> int:
        """Requests queued for a slot."""
        return len(self._waiters)

    @property
    def load(self) -> float:
        """Share of the concurrency limit in use, counting waiters (for least-loaded choice)."""
        return (self.in_flight + self.waiting) / max(self.limit, 1)

    @property
    def free(self) -> bool:
        """Whether a request would start at once."""
        return self.in_flight < self.limit and not self._waiters

    def set_limit(self, limit: int) -> None:
        """A new share; waiters start at once if it grew."""
        self.limit = max(0, limit)
        self._wake()

    async def acquire(self, pool_name: str) -> None:
        """Wait for a slot, or raise `Overloaded` at once when the queue is full too."""
        if self.free:
            self.in_flight += 1
            return
        # Past the queue, or no share at all on this replica (more replicas than slots):
        # refuse now, so the client retries and the balancer may pick another replica.
        if self.waiting >= self.max_queue or self.limit == 0:
            raise Overloaded(
                f"pool {pool_name!r} is at capacity; retry shortly",
                code="pool_overloaded",
                headers={"retry-after": "1"},
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.in_flight -= 1  # granted as we were cancelled: give it back
                self._wake()
            else:
                # A release may already have taken this cancelled waiter off the queue (and
                # passed over it): then there is nothing to remove.
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give the slot back (exactly once per successful `acquire`)."""
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)
