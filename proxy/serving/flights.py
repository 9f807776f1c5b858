"""InFlight: which requests hold a device on this replica now, and since when (per pool).

The heartbeat publishes each pool's oldest start, so settlement never closes a window that a
request still running on any replica overlaps. O(1) on the request path.
"""

from __future__ import annotations

from datetime import datetime


class InFlight:
    """Request ids per pool with the time each was admitted there."""

    def __init__(self) -> None:
        self._pools: dict[str, dict[str, datetime]] = {}

    def begin(self, pool: str, request_id: str, at: datetime) -> None:
        """The request was admitted to `pool`."""
        self._pools.setdefault(pool, {})[request_id] = at

    def end(self, pool: str, request_id: str) -> None:
        """The request left the pool (answered, failed over, or gone)."""
        flights = self._pools.get(pool)
        if flights is not None:
            flights.pop(request_id, None)

    def oldest(self) -> dict[str, datetime]:
        """Each busy pool's oldest start."""
        return {pool: min(flights.values()) for pool, flights in self._pools.items() if flights}

    def count(self, pool: str) -> int:
        """Requests in flight on a pool."""
        return len(self._pools.get(pool, ()))
