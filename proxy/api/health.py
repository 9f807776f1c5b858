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
        "pools": [
            {
                "name": pool.name,
                "kind": pool.config.kind,
                "in_flight": pool.admission.in_flight,
                "waiting": pool.admission.waiting,
                "max_concurrency": pool.admission.max_concurrency,
                "backends": len(pool.backends),  # URLs may name internal hosts: admin only
                "energy": dataclasses.asdict(pool.accountant.stats) if pool.accountant else None,
            }
            for pool in state.registry.pools
        ],
    }
