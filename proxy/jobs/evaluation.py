"""EvaluationJob: each interval, decide by Sprout's rule whether to run the evaluator now.

Runs on the jobs leader only. Before deciding it deletes captured prompts past retention. It
runs when the rule says so (`evaluator.schedule.should_evaluate`, against the trailing mean
intensity: causal) and every pool is below the utilisation threshold; the run itself goes
through this proxy's own serving path (`InProcessGenerator`), marked as evaluator traffic.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, desc, select

from evaluator.generator import InProcessGenerator
from evaluator.run import EvaluationRun, RunOptions
from evaluator.sampling import delete_expired
from evaluator.schedule import ScheduleRule, should_evaluate
from proxy.accounting.tables import evaluations
from proxy.carbon.base import CarbonIntensityProvider
from proxy.carbon.history import CIHistory, hourly_values
from proxy.carbon.window import trailing_stats
from proxy.config import Settings
from proxy.directives.store import CatalogueStore
from proxy.jobs.leader import LeaderLock
from proxy.pools.registry import PoolRegistry
from proxy.serving.service import Serving

log = logging.getLogger(__name__)


class EvaluationJob:
    """`tick` is scheduled every `evaluator_interval_s`."""

    def __init__(self, *, engine: Engine, settings: Settings, serving: Serving,
                 registry: PoolRegistry, provider: CarbonIntensityProvider, leader: LeaderLock,
                 catalogues: CatalogueStore, history: CIHistory,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._settings = settings
        self._serving = serving
        self._registry = registry
        self._provider = provider
        self._leader = leader
        self._catalogues = catalogues
        self._history = history
        self._clock = clock

    async def tick(self) -> str:
        """Clean up, decide, and maybe run; returns what it did."""
        settings = self._settings
        assert settings.evaluator_judge_model is not None
        now = self._clock()
        if not await asyncio.to_thread(self._leader.is_leader):
            return "follower"
        retention = timedelta(days=settings.prompt_retention_days)
        await asyncio.to_thread(self._cleanup, now, retention)
        last = await asyncio.to_thread(self._last_started)
        hours = math.inf if last is None else (now - last).total_seconds() / 3600
        current = await self._provider.current(now)
        # The recorded history (ci_readings): a live provider has no past of its own.
        window = timedelta(days=settings.optimiser_trailing_days)
        history = await self._history.readings(None, self._provider, now - window, now)
        values = hourly_values(history, now, current)
        stats = trailing_stats(history, now, window, current)
        rule = ScheduleRule(settings.evaluator_max_idle_h, settings.evaluator_grace_h,
                            settings.evaluator_staleness_rate_per_h)
        if not should_evaluate(hours, (values[0], values[1], values[2]), stats.mean_g_per_kwh,
                               rule):
            return "waiting for a clean hour"
        busiest = max((pool.admission.load for pool in self._registry.pools), default=0.0)
        if busiest > settings.evaluator_max_pool_utilisation:
            return f"pools busy ({busiest:.0%})"
        options = RunOptions.from_settings(settings, self._catalogues.current.ids, "schedule",
                                           ci_g_per_kwh=current.g_per_kwh)
        summary = await EvaluationRun(self._engine, InProcessGenerator(self._serving),
                                      options).run()
        log.info("evaluator: %s (%d judged, %d failed)", summary.status, summary.judged,
                 summary.failed)
        return summary.status

    def _cleanup(self, now: datetime, retention: timedelta) -> None:
        with self._engine.begin() as connection:
            removed = delete_expired(connection, now, retention)
        if removed:
            log.info("deleted %d captured prompts past retention", removed)

    def _last_started(self) -> datetime | None:
        with self._engine.connect() as connection:
            started: datetime | None = connection.execute(select(evaluations.c.started_at).order_by(
                desc(evaluations.c.started_at)).limit(1)).scalar()
        if started is None:
            return None
        return started if started.tzinfo else started.replace(tzinfo=UTC)
