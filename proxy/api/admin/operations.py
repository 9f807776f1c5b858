"""`/admin/pools`, `/admin/directives`, `/admin/optimiser`, `/admin/evaluations`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Engine, desc, select

from proxy.accounting import windows
from proxy.accounting.tables import evaluations, optimiser_runs, quality_scores
from proxy.api.admin.deps import AdminDep
from proxy.directives.catalogue import DirectiveLevel
from proxy.errors import InvalidRequest
from proxy.jobs.reoptimise import allocation_document

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/pools", summary="Pools: load, meter, grid intensity now")
async def pools(state: AdminDep) -> list[dict[str, Any]]:
    """Live state of every pool."""
    answer = []
    router = state.serving.router
    now_s = router.clock() if router is not None else 0.0
    known = await asyncio.to_thread(_devices, state.engine)
    for pool in state.registry.pools:
        pool_devices = [device for device in known if pool.name in device["pools"]]
        observed = router.latency.observed(pool.name, now_s) if router is not None else None
        region = pool.config.accounting.region
        reading = state.carbon.latest(region)
        answer.append({
            "name": pool.name, "kind": pool.config.kind,
            "backends": [backend.url for backend in pool.backends],
            "models": sorted(pool.routes), "in_flight": pool.admission.in_flight,
            "waiting": pool.admission.waiting,
            "max_concurrency": pool.admission.max_concurrency,
            "circuit_breakers": [{"backend": backend.url, "state": breaker.state,
                                  "consecutive_failures": breaker.failures}
                                 for backend, breaker in zip(pool.backends, pool.breakers,
                                                             strict=True)],
            "region": region, "pue": pool.config.accounting.pue,
            "ci_g_per_kwh": reading.g_per_kwh, "ci_source": reading.source,
            "replica_share": pool.admission.limit,
            # Fleet-wide, from settlement: each device's meter and metered/attributed/idle J.
            "energy": {name: sum(device[name] for device in pool_devices)
                       for name in ("metered_j", "attributed_j", "idle_j")},
            "devices": pool_devices,
            "routing": {
                "hardware": pool.config.accounting.hardware,
                "model_params_b": pool.config.model_params_b,
                "slo": pool.config.slo.model_dump(),
                "measured": dataclasses.asdict(observed) if observed is not None else None,
            },
        })
    return answer


@router.get("/directives", summary="The directive catalogue")
async def directives(state: AdminDep) -> list[dict[str, Any]]:
    """Levels, texts and text hashes (edit through PROXY_DIRECTIVE_LEVELS)."""
    return [dataclasses.asdict(d) for d in state.serving.director.catalogue.directives]


@router.put("/directives", summary="Replace the directive catalogue")
async def replace_directives(levels: list[DirectiveLevel], state: AdminDep) -> dict[str, Any]:
    """Validate, persist and apply now; the optimiser re-solves for the new levels at once."""
    store = state.serving.director.catalogues
    try:
        await asyncio.to_thread(store.replace, state.engine, levels)
    except ValueError as exc:
        raise InvalidRequest(str(exc), code="invalid_catalogue") from exc
    status = await state.reoptimiser.run_once()
    return {"levels": [dataclasses.asdict(d) for d in store.current.directives],
            "optimiser": status}


@router.get("/optimiser", summary="The published allocation and recent solves")
async def optimiser(state: AdminDep, history: int = 20) -> dict[str, Any]:
    """What the request path draws from now, and the last `history` runs with their inputs."""
    runs = await asyncio.to_thread(_recent, state.engine, optimiser_runs,
                                   optimiser_runs.c.ran_at, min(max(history, 1), 200))
    for run in runs:
        run["inputs"] = json.loads(run.pop("inputs_json"))
        run["allocation"] = json.loads(run.pop("allocation_json"))
    reoptimiser = state.reoptimiser
    predictor = reoptimiser.predictor
    in_force = predictor is not None and (
        reoptimiser.classifiers.current.version == predictor.classifier.version)
    return {"allocation": allocation_document(state.allocation.current),
            # The learned-class predictor this replica labels requests with (null: regex
            # classes), its version and held-out accuracy (cross-fitted on its verdicts).
            "predictor": predictor.summary(in_force) if predictor is not None else None,
            "runs": runs}


@router.post("/optimiser/solve", summary="Re-solve now")
async def solve_now(state: AdminDep) -> dict[str, Any]:
    """Run the optimiser job now (followers publish the leader's latest solve instead)."""
    status = await state.reoptimiser.run_once()
    return {"status": status, "allocation": allocation_document(state.allocation.current)}


@router.get("/evaluations", summary="Evaluator runs and the latest quality scores")
async def list_evaluations(state: AdminDep, limit: int = 20) -> dict[str, Any]:
    """Recent runs, and q(class, level) of the newest finished one."""
    runs = await asyncio.to_thread(_recent, state.engine, evaluations,
                                   evaluations.c.started_at, min(max(limit, 1), 200))
    done = next((r for r in runs if r["status"] == "done"), None)
    scores = [] if done is None else await asyncio.to_thread(
        _scores, state.engine, done["evaluation_id"])
    for run in runs:
        run.pop("sample_ids_json", None)
    return {"evaluations": runs, "latest_scores": scores}


@router.post("/evaluations", status_code=202, summary="Start an evaluator run now")
async def start_evaluation(state: AdminDep) -> dict[str, Any]:
    """Start a bounded run in the background (the run's own lock prevents two at once)."""
    settings = state.settings
    if not settings.evaluator_judge_model:
        raise InvalidRequest("No judge model: set PROXY_EVALUATOR_JUDGE_MODEL first.",
                             code="evaluator_not_configured")
    from evaluator.generator import InProcessGenerator
    from evaluator.run import EvaluationRun, RunOptions

    options = RunOptions.from_settings(settings, state.serving.director.catalogue.ids, "admin")
    run = EvaluationRun(state.engine, InProcessGenerator(state.serving), options)
    task = asyncio.create_task(run.run())
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return {"status": "started"}


_BACKGROUND: set[asyncio.Task[Any]] = set()  # keep references so runs are not collected


def _recent(engine: Engine, table: Any, order: Any, limit: int) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(
            select(table).order_by(desc(order)).limit(limit))]


def _scores(engine: Engine, evaluation_id: str) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(r._mapping) for r in connection.execute(select(quality_scores).where(
            quality_scores.c.evaluation_id == evaluation_id))]


def _devices(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return windows.devices(connection)
