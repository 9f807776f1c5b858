"""Heartbeat: this replica's row in `replicas`, and its share of every fleet-wide limit.

Every replica beats every `replica_heartbeat_s`: it upserts its row with the oldest request
it has in flight per pool and the arrival of its oldest row not yet in the database (what
settlement's horizon needs), then reads the live replicas (beaten within
`replica_timeout_s`) and takes its share of each pool's `max_concurrency` and
`max_concurrency_per_backend`: with K slots over N replicas sorted by id, replica i gets
K // N, plus one if i < K mod N (per backend the extra slot rotates with the backend's index),
so the shares sum to exactly K. A replica that stops beating drops out at the next beat of the
others. Between a join and the others' next beat, the fleet may briefly hold one share more
than K; a beat is a second.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update

from proxy.accounting.ledger_writer import LedgerWriter
from proxy.accounting.tables import replicas
from proxy.pools.registry import PoolRegistry
from proxy.serving.flights import InFlight

log = logging.getLogger(__name__)

FORGET_AFTER = timedelta(hours=1)  # rows of replicas this long silent are deleted


class Heartbeat:
    """`beat` is scheduled on every replica; `leave` deletes the row at shutdown."""

    def __init__(self, engine: Engine, registry: PoolRegistry, flights: InFlight,
                 ledger: LedgerWriter, *, timeout_s: float,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._registry = registry
        self._flights = flights
        self._ledger = ledger
        self._timeout = timedelta(seconds=timeout_s)
        self._clock = clock
        self.replica_id = f"{socket.gethostname()[:40]}-{os.getpid()}-{secrets.token_hex(3)}"
        self.started_at = clock()
        self.live = 1
        self.index = 0

    async def beat(self) -> str:
        """Publish this replica's state and take its shares."""
        oldest = {pool: at.isoformat() for pool, at in self._flights.oldest().items()}
        values = {"heartbeat_at": self._clock(), "in_flight_json": json.dumps(oldest),
                  "pending_since": self._ledger.pending_since()}
        live = await asyncio.to_thread(self._beat, values)
        self.live, self.index = len(live), live.index(self.replica_id)
        for pool in self._registry.pools:
            pool.take_share(self.live, self.index)
        return f"replica {self.index + 1} of {self.live}"

    def _beat(self, values: dict[str, object]) -> list[str]:
        now = values["heartbeat_at"]
        assert isinstance(now, datetime)
        with self._engine.begin() as connection:
            updated = connection.execute(update(replicas).where(
                replicas.c.replica_id == self.replica_id).values(**values)).rowcount
            if not updated:
                connection.execute(insert(replicas).values(
                    replica_id=self.replica_id, host=socket.gethostname()[:256], pid=os.getpid(),
                    started_at=self.started_at, **values))
            connection.execute(delete(replicas).where(replicas.c.heartbeat_at < now - FORGET_AFTER))
            live = sorted(row.replica_id for row in connection.execute(
                select(replicas.c.replica_id).where(
                    replicas.c.heartbeat_at >= now - self._timeout)))
        if self.replica_id not in live:  # our own clock lags the database's rows
            live = sorted([*live, self.replica_id])
        return live

    def leave(self) -> None:
        """Blocking: delete this replica's row (the others take its shares at their next beat)."""
        try:
            with self._engine.begin() as connection:
                connection.execute(delete(replicas).where(
                    replicas.c.replica_id == self.replica_id))
        except Exception as exc:
            log.warning("could not remove replica row %s (%s)", self.replica_id, exc)
