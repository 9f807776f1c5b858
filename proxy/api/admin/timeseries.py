"""`/admin/timeseries`: hourly series the dashboard plots (client traffic only)."""

from __future__ import annotations

import asyncio
import collections
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Engine, func, select

from proxy.accounting.tables import requests
from proxy.api.admin.deps import AdminDep
from proxy.api.admin.stats import METHOD, Counterfactual, group_column

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/timeseries", summary="Hourly series: mix, gCO2e, saved vs L0, CI and joules")
async def timeseries(state: AdminDep, since: datetime | None = None,
                     until: datetime | None = None) -> dict[str, Any]:
    """Per hour: requests by level, gCO2e per request and saved vs L0; per pool: CI, joules."""
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=2)
    rows = await asyncio.to_thread(_rows, state.engine, since, until)
    return {"since": since, "until": until, "saved_method": METHOD, **_series(rows)}


def _rows(engine: Engine, since: datetime, until: datetime) -> list[dict[str, Any]]:
    columns = requests.c
    hour = group_column(engine, "hour").label("hour")
    query = (select(hour, columns.pool, columns.directive_level, columns.task_class,
                    func.count().label("requests"),
                    func.coalesce(func.sum(columns.energy_j), 0.0).label("energy_j"),
                    func.count(columns.energy_j).label("metered"),
                    func.coalesce(func.sum(columns.operational_g_co2e), 0.0).label("operational"),
                    func.coalesce(func.sum(columns.embodied_g_co2e), 0.0).label("embodied"),
                    func.avg(columns.ci_g_per_kwh).label("ci"))
             .where(columns.created_at >= since, columns.created_at < until,
                    columns.is_evaluator.is_(False))
             .group_by(hour, columns.pool, columns.directive_level, columns.task_class))
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


def _series(rows: list[dict[str, Any]]) -> dict[str, Any]:
    counterfactual = Counterfactual(rows)
    hours: dict[str, dict[str, Any]] = collections.defaultdict(lambda: {
        "requests": 0, "levels": collections.Counter(), "carbon_g": 0.0, "saved_g": 0.0})
    pools: dict[str, dict[str, dict[str, float]]] = collections.defaultdict(
        lambda: collections.defaultdict(lambda: {"energy_j": 0.0, "ci_sum": 0.0, "ci_n": 0.0}))
    for row in rows:
        hour = str(row["hour"])
        entry = hours[hour]
        entry["requests"] += row["requests"]
        entry["levels"][row["directive_level"] or "none"] += row["requests"]
        carbon = float(row["operational"]) + float(row["embodied"])
        entry["carbon_g"] += carbon
        entry["saved_g"] += counterfactual.saved_g(row, carbon)
        if row["pool"]:
            pool_hour = pools[row["pool"]][hour]
            pool_hour["energy_j"] += float(row["energy_j"])
            if row["ci"] is not None:
                pool_hour["ci_sum"] += float(row["ci"]) * row["requests"]
                pool_hour["ci_n"] += row["requests"]
    ordered = sorted(hours)
    return {
        "hours": ordered,
        "requests": [hours[h]["requests"] for h in ordered],
        "level_mix": {level: [hours[h]["levels"][level] / hours[h]["requests"] for h in ordered]
                      for level in sorted({lvl for h in ordered for lvl in hours[h]["levels"]})},
        "g_co2e_per_request": [hours[h]["carbon_g"] / hours[h]["requests"] for h in ordered],
        "saved_g_co2e_per_request": [hours[h]["saved_g"] / hours[h]["requests"]
                                     for h in ordered],
        "pools": {name: {
            "ci_g_per_kwh": [(by_hour[h]["ci_sum"] / by_hour[h]["ci_n"]) if h in by_hour
                             and by_hour[h]["ci_n"] else None for h in ordered],
            "energy_j": [by_hour[h]["energy_j"] if h in by_hour else 0.0 for h in ordered],
        } for name, by_hour in sorted(pools.items())},
    }
