"""Reoptimiser: re-solve the LP from the ledger and the judge's verdicts, publish, persist."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from proxy.accounting import repository
from proxy.carbon.base import CarbonIntensityProvider, CIReading
from proxy.carbon.history import CIHistory
from proxy.carbon.window import CIStats, trailing_stats
from proxy.classify.classifier import CLASSES
from proxy.classify.learned import ClassifierHolder, LearnedClassifier, RegexClassifier
from proxy.config import Settings
from proxy.directives.store import CatalogueStore
from proxy.jobs.leader import LeaderLock
from proxy.optimiser.allocation import ALL_CLASSES, Allocation, AllocationHolder
from proxy.optimiser.inputs import DecayedUsage, Terms, Verdict, build_terms
from proxy.optimiser.joint import JointSolution, solve_joint
from proxy.optimiser.lp import Solution, solve
from proxy.routing.planner import JointPlanner

log = logging.getLogger(__name__)


class Reoptimiser:
    """One call of `run_once` per interval (APScheduler) or on demand."""

    def __init__(
        self,
        *,
        engine: Engine,
        settings: Settings,
        catalogues: CatalogueStore,
        holder: AllocationHolder,
        provider: CarbonIntensityProvider,
        leader: LeaderLock,
        history: CIHistory,
        planner: JointPlanner | None = None,
        classifiers: ClassifierHolder | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._catalogues = catalogues
        self._holder = holder
        self.provider = provider
        self._leader = leader
        self._history = history
        self._planner = planner  # set: solve the joint directive + placement LP
        self._clock = clock
        self.classifiers = classifiers or ClassifierHolder()
        # The learned-class predictor in force (None: the regex classes), as /admin shows it.
        self.predictor: PublishedPredictor | None = None
        self.last_solve_ms = 0.0
        # When the evaluator last finished a run (fleet-wide, from `evaluations`; /metrics).
        self.last_evaluation_at: datetime | None = None

    async def run_once(self) -> str:
        """Solve and publish (leader), or publish the leader's latest solve (follower)."""
        now = self._clock()
        self.last_evaluation_at = await asyncio.to_thread(self._last_evaluation)
        # Leader and followers alike: the newest predictor labels requests from now on, and
        # the leader's allocation (solved over the same classes) arrives in the same tick.
        await asyncio.to_thread(self._refresh_predictor)
        if not await asyncio.to_thread(self._leader.is_leader):
            return await self._follow()
        settings = self._settings
        await asyncio.to_thread(self._catalogues.reload, self._engine)  # an admin's PUT
        window = timedelta(days=settings.optimiser_trailing_days)
        reading = await self.provider.current(now)
        # The one recorded history (ci_readings, written by the leader every carbon refresh)
        # plus the provider's own past, if it knows one: causal trailing statistics.
        history = await self._history.readings(None, self.provider, now - window, now)
        usage, verdicts, last_hour = await asyncio.to_thread(self._read, now)
        stats = trailing_stats(history, now, window, reading)
        classes: tuple[str, ...] = CLASSES
        predictor = self.predictor
        if predictor is not None and isinstance(self.classifiers.current, LearnedClassifier):
            # Quality per learned class from held-out verdicts only (cross-fitted).
            classes = predictor.classifier.classes
            horizon = now - timedelta(hours=8 * settings.optimiser_half_life_h)
            verdicts = [Verdict(task_class, winner, (now - at).total_seconds() / 3600)
                        for at, task_class, winner in predictor.heldout if at >= horizon]
        built = build_terms(
            self._catalogues.current.ids, classes, usage, verdicts,
            ci_g_per_kwh=reading.g_per_kwh,
            j_per_output_token=settings.estimate_j_per_output_token,
            half_life_h=settings.optimiser_half_life_h,
            prior_strength=settings.optimiser_prior_strength,
            lower_bound_z=settings.optimiser_quality_lower_bound_z,
            min_verdicts=settings.optimiser_min_verdicts,
        )
        solution: Solution | JointSolution | None
        if self._planner is not None:
            rate = last_hour / 3600.0
            allocation, solution = await asyncio.to_thread(
                self._allocate_jointly, built, reading, stats, rate)
        else:  # the LP off the event loop (HiGHS takes milliseconds)
            allocation, solution = await asyncio.to_thread(self._allocate, built, reading, stats)
        self.last_solve_ms = solution.solve_ms if solution else 0.0
        self._holder.publish(allocation)
        status = "cold_start" if solution is None else solution.status
        await asyncio.to_thread(self._persist, self._run_row(now, status, allocation, built,
                                                             reading, stats, solution))
        log.info("optimiser: %s", allocation.reason)
        return status

    def _allocate(self, built: Terms, reading: CIReading,
                  stats: CIStats) -> tuple[Allocation, Solution | None]:
        levels = self._catalogues.current.ids
        if built.terms is None:
            return Allocation.always(levels, levels[0], built.reason), None
        settings = self._settings
        solution = solve(built.terms, xi=settings.optimiser_xi, ci=reading.g_per_kwh,
                         ci_min=stats.min_g_per_kwh, ci_max=stats.max_g_per_kwh,
                         form=settings.optimiser_form)
        baseline = tuple(1.0 if i == 0 else 0.0 for i in range(len(levels)))
        saving = 1 - solution.expected_carbon_g / solution.baseline_carbon_g
        reason = (f"{settings.optimiser_form} LP at {reading.g_per_kwh:.0f} g/kWh "
                  f"({reading.source}): expected saving {saving:.1%}, quality "
                  f"{solution.expected_quality:.3f} >= floor {solution.quality_floor:.3f}")
        return Allocation(levels, solution.rows, baseline, reason), solution

    def _allocate_jointly(self, built: Terms, reading: CIReading, stats: CIStats,
                          rate_per_s: float) -> tuple[Allocation, JointSolution]:
        assert self._planner is not None
        levels = self._catalogues.current.ids
        settings = self._settings
        terms = self._planner.terms(built.terms, levels)
        # Without verdicts (cold start) the level stays the baseline: no quality is traded.
        xi = settings.optimiser_xi if built.terms is not None else 0.0
        solution = solve_joint(terms, self._planner.capacities(), rate_per_s=rate_per_s, xi=xi,
                               ci=reading.g_per_kwh, ci_min=stats.min_g_per_kwh,
                               ci_max=stats.max_g_per_kwh)
        baseline = tuple(1.0 if i == 0 else 0.0 for i in range(len(levels)))
        rows = {name: row for name, row in solution.levels.items() if name != ALL_CLASSES}
        reason = (f"joint LP at {reading.g_per_kwh:.0f} g/kWh ({reading.source}), "
                  f"{rate_per_s * 3600:.0f} requests/h: {solution.status}; expected "
                  f"{solution.expected_carbon_g:.4f} g/request, quality "
                  f"{solution.expected_quality:.3f} >= floor {solution.quality_floor:.3f}; "
                  "utilisation " + ", ".join(f"{pool} {u:.0%}"
                                             for pool, u in solution.utilisation.items()))
        if built.terms is None:
            reason += f" (cold start, baseline level only: {built.reason})"
        return Allocation(levels, rows, baseline, reason, solution.pools,
                          solution.placement), solution

    def _read(self, now: datetime) -> tuple[list[DecayedUsage], list[Verdict], int]:
        """Hourly sums (never raw rows), verdicts, and the last hour's request count."""
        horizon = now - timedelta(hours=8 * self._settings.optimiser_half_life_h)
        with self._engine.connect() as connection:
            usage = repository.decayed_usage(
                connection, now, horizon, self._settings.optimiser_half_life_h)
            verdicts = repository.recent_verdicts(connection, now, horizon)
            last_hour = repository.served_since(connection, now - timedelta(hours=1))
        return usage, verdicts, last_hour

    def _refresh_predictor(self) -> None:
        """Load the newest published predictor if it is not the one in force."""
        with self._engine.connect() as connection:
            version = repository.latest_predictor_version(connection)
            if version is None or (self.predictor is not None
                                   and self.predictor.classifier.version == version):
                return
            row = repository.predictor(connection, version)
        if row is None:
            return
        predictor = PublishedPredictor.from_row(row)
        self.predictor = predictor
        if predictor.classifier.levels != self._catalogues.current.ids:
            log.warning("predictor %s was fitted for levels %s, not %s: regex classes stay",
                        version, predictor.classifier.levels, self._catalogues.current.ids)
            self.classifiers.publish(RegexClassifier())
            return
        self.classifiers.publish(predictor.classifier)
        log.info("predictor %s in force (held-out accuracy %.3f)", version,
                 predictor.heldout_accuracy)

    def _persist(self, values: dict[str, Any]) -> None:
        with self._engine.begin() as connection:
            repository.add_optimiser_run(connection, values)

    def _run_row(self, now: datetime, status: str, allocation: Allocation, built: Terms,
                 reading: CIReading, stats: CIStats,
                 solution: Solution | JointSolution | None) -> dict[str, Any]:
        settings = self._settings
        inputs = {
            "verdicts": built.verdicts, "requests": built.requests,
            "predictor": (self.predictor.classifier.version
                          if isinstance(self.classifiers.current, LearnedClassifier)
                          and self.predictor is not None else None),
            "ci_stats": dataclasses.asdict(stats), "placement": self._planner is not None,
            "terms": [dataclasses.asdict(t) for t in built.terms or []],
        }
        return {
            "run_id": f"opt_{secrets.token_hex(8)}", "ran_at": now, "form":
            settings.optimiser_form, "status": status, "reason": allocation.reason,
            "xi": settings.optimiser_xi, "ci_g_per_kwh": reading.g_per_kwh,
            "ci_source": reading.source, "ci_min_g_per_kwh": stats.min_g_per_kwh,
            "ci_max_g_per_kwh": stats.max_g_per_kwh,
            "tolerance_used": solution.tolerance_used if solution else None,
            "expected_g_co2e": solution.expected_carbon_g if solution else None,
            "baseline_g_co2e": solution.baseline_carbon_g if solution else None,
            "expected_quality": solution.expected_quality if solution else None,
            "quality_floor": solution.quality_floor if solution else None,
            "solve_ms": solution.solve_ms if solution else None,
            "inputs_json": json.dumps(inputs),
            "allocation_json": json.dumps(allocation_document(allocation)),
        }

    async def _follow(self) -> str:
        await asyncio.to_thread(self._catalogues.reload, self._engine)
        latest = await asyncio.to_thread(self._latest)
        if latest is None:
            return "follower: no solve yet"
        document = latest["allocation"]
        if tuple(document["levels"]) != self._catalogues.current.ids:
            return "follower: leader uses another directive catalogue"
        self._holder.publish(Allocation(
            tuple(document["levels"]), {k: tuple(v) for k, v in document["rows"].items()},
            tuple(document["default"]), f"from leader run {latest['run_id']}: {latest['reason']}",
            tuple(document.get("pools", ())),
            {k: tuple(tuple(w) for w in v) for k, v in document.get("placement", {}).items()},
        ))
        return "follower"

    def _last_evaluation(self) -> datetime | None:
        with self._engine.connect() as connection:
            return repository.last_finished_evaluation(connection)

    def _latest(self) -> dict[str, Any] | None:
        with self._engine.connect() as connection:
            return repository.latest_optimiser_run(connection)


@dataclasses.dataclass(frozen=True, slots=True)
class PublishedPredictor:
    """A `predictors` row as the proxy uses it: the classifier and its held-out verdicts."""

    classifier: LearnedClassifier
    fitted_at: datetime
    evaluation_id: str | None
    verdicts: int
    heldout_accuracy: float
    heldout_log_loss: float
    regex_accuracy: float
    heldout: tuple[tuple[datetime, str, str], ...]  # (judged at, held-out class, winner)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PublishedPredictor:
        """From `repository.predictor`'s row."""
        heldout = tuple((_aware(datetime.fromisoformat(at)), task_class, winner)
                        for at, task_class, winner in row["heldout"])
        return cls(LearnedClassifier.from_document(row["model"]), row["fitted_at"],
                   row["evaluation_id"], row["verdicts"], row["heldout_accuracy"],
                   row["heldout_log_loss"], row["regex_accuracy"], heldout)

    def summary(self, in_force: bool) -> dict[str, Any]:
        """What /admin/optimiser shows."""
        return {"version": self.classifier.version, "in_force": in_force,
                "fitted_at": self.fitted_at.isoformat(), "evaluation_id": self.evaluation_id,
                "verdicts": self.verdicts, "heldout_accuracy": self.heldout_accuracy,
                "heldout_log_loss": self.heldout_log_loss,
                "regex_classes_heldout_accuracy": self.regex_accuracy,
                "classes": list(self.classifier.classes), "edges": list(self.classifier.edges)}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def allocation_document(allocation: Allocation) -> dict[str, Any]:
    """JSON form of an Allocation (persisted, and shown by the admin API)."""
    return {"levels": list(allocation.levels), "rows": {k: list(v) for k, v in
                                                        allocation.rows.items()},
            "default": list(allocation.default), "reason": allocation.reason,
            "pools": list(allocation.pools),
            "placement": {k: [list(w) for w in v] for k, v in allocation.placement.items()}}
