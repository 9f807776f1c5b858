"""AppState: every long-lived object, built once by the lifespan and seen by every request."""

from __future__ import annotations

import dataclasses

from sqlalchemy import Engine

from proxy.accounting.ledger_writer import LedgerWriter
from proxy.accounting.settlement import SettlementJob
from proxy.api.metrics import Metrics
from proxy.auth.keys import KeyRing
from proxy.carbon.service import CarbonService
from proxy.config import Settings
from proxy.jobs.heartbeat import Heartbeat
from proxy.jobs.reoptimise import Reoptimiser
from proxy.limits.usage import KeyUsage
from proxy.optimiser.allocation import AllocationHolder
from proxy.pools.registry import PoolRegistry
from proxy.server.loopwatch import LoopWatch
from proxy.serving.service import Serving


@dataclasses.dataclass(frozen=True, slots=True)
class AppState:
    """The typed state handed to routes through `api.deps`."""

    settings: Settings
    engine: Engine
    ledger: LedgerWriter
    keys: KeyRing
    registry: PoolRegistry
    serving: Serving
    allocation: AllocationHolder
    reoptimiser: Reoptimiser
    carbon: CarbonService
    metrics: Metrics
    settlement: SettlementJob
    heartbeat: Heartbeat
    usage: KeyUsage
    loop_watch: LoopWatch
