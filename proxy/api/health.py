"""Liveness and readiness: the ledger's counters and each pool's load."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter

from proxy.api.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness, ledger counters and pool load")
async def health(state: StateDep) -> dict[str, Any]:
    """Cheap: reads in-memory counters only."""
    ledger = state.ledger
    return {
        "status": "ok",
        "ledger": dataclasses.asdict(ledger.stats) | {"queue_depth": ledger.queue_depth},
        "replica": {"id": state.heartbeat.replica_id, "index": state.heartbeat.index,
                    "live_replicas": state.heartbeat.live, "leader": state.settlement.leading},
        "settlement": dataclasses.asdict(state.settlement.stats),
        # The worst event-loop lag since start, and how many passed the warning threshold.
        "event_loop": {"max_lag_ms": round(state.loop_watch.max_lag_ms, 1),
                       "stalls": state.loop_watch.stalls},
        "pools": [
            {
                "name": pool.name,
                "kind": pool.config.kind,
                "in_flight": pool.admission.in_flight,
                "waiting": pool.admission.waiting,
                "max_concurrency": pool.admission.max_concurrency,
                "replica_share": pool.admission.limit,
                "backends": len(pool.backends),  # URLs may name internal hosts: admin only
            }
            for pool in state.registry.pools
        ],
    }
