"""`/admin/timeseries`: hourly series the dashboard plots (client traffic only)."""

from __future__ import annotations

import asyncio
import collections
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter
from sqlalchemy import Engine, func, select

from proxy.accounting.tables import ci_readings, energy_devices, energy_windows, requests
from proxy.api.admin.deps import AdminDep
from proxy.api.admin.stats import METHOD, Counterfactual, group_column, hour_of

router = APIRouter(prefix="/admin", tags=["admin"])


@router.get("/timeseries", summary="Hourly series: mix, gCO2e, saved vs L0, CI and joules")
async def timeseries(state: AdminDep, since: datetime | None = None,
                     until: datetime | None = None) -> dict[str, Any]:
    """Per hour: requests by level, gCO2e per request and saved vs L0; per pool: CI, joules."""
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=2)
    rows = await asyncio.to_thread(_rows, state.engine, since, until)
    regions = {pool.name: pool.config.accounting.region for pool in state.registry.pools}
    grid = await asyncio.to_thread(_grid, state.engine, since, until)
    idle = await asyncio.to_thread(_idle, state.engine, since, until)
    series = _series(rows, regions, grid, idle)
    return {"since": since, "until": until, "saved_method": METHOD, **series}


def _grid(engine: Engine, since: datetime, until: datetime) -> dict[tuple[str, str], float]:
    """Mean recorded intensity per (region, hour): the leader's one history."""
    hour = hour_of(engine, ci_readings.c.read_at).label("hour")
    query = (select(ci_readings.c.region, hour, func.avg(ci_readings.c.g_per_kwh))
             .where(ci_readings.c.read_at >= since, ci_readings.c.read_at < until)
             .group_by(ci_readings.c.region, hour))
    with engine.connect() as connection:
        return {(region, str(at)): float(value)
                for region, at, value in connection.execute(query)}


def _idle(engine: Engine, since: datetime, until: datetime) -> dict[tuple[str, str], float]:
    """Idle joules per (pool, hour); a device serving several pools splits its idle evenly."""
    hour = hour_of(engine, energy_windows.c.end_at).label("hour")
    query = (select(energy_devices.c.pools, hour, func.sum(energy_windows.c.idle_j))
             .join(energy_devices, energy_devices.c.device_id == energy_windows.c.device_id)
             .where(energy_windows.c.end_at >= since, energy_windows.c.end_at < until)
             .group_by(energy_devices.c.pools, hour))
    found: dict[tuple[str, str], float] = collections.defaultdict(float)
    with engine.connect() as connection:
        for pools, at, idle_j in connection.execute(query):
            names = [name for name in (pools or "").split(",") if name]
            for name in names:
                found[(name, str(at))] += float(idle_j or 0.0) / len(names)
    return found


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


def _series(rows: list[dict[str, Any]], regions: dict[str, str | None],
            grid: dict[tuple[str, str], float],
            idle: dict[tuple[str, str], float]) -> dict[str, Any]:
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
    for pool, hour in idle:  # hours with idle energy only are hours too
        _ = hours[hour], pools[pool][hour]  # the defaultdicts make both entries
    ordered = sorted(hours)

    def intensity(name: str, hour: str, by_hour: dict[str, dict[str, float]]) -> float | None:
        recorded = grid.get((regions.get(name) or "", hour))
        if recorded is not None:
            return recorded
        cell = by_hour.get(hour)
        return cell["ci_sum"] / cell["ci_n"] if cell and cell["ci_n"] else None

    return {
        "hours": ordered,
        "requests": [hours[h]["requests"] for h in ordered],
        "level_mix": {level: [hours[h]["levels"][level] / max(hours[h]["requests"], 1)
                              for h in ordered]
                      for level in sorted({lvl for h in ordered for lvl in hours[h]["levels"]})},
        "g_co2e_per_request": [hours[h]["carbon_g"] / hours[h]["requests"]
                               if hours[h]["requests"] else None for h in ordered],
        "saved_g_co2e_per_request": [hours[h]["saved_g"] / hours[h]["requests"]
                                     if hours[h]["requests"] else None for h in ordered],
        "pools": {name: {
            # The recorded grid history of the pool's region; rows' own values where none.
            "ci_g_per_kwh": [intensity(name, h, by_hour) for h in ordered],
            "energy_j": [by_hour[h]["energy_j"] if h in by_hour else 0.0 for h in ordered],
            "idle_j": [idle.get((name, h), 0.0) for h in ordered],
        } for name, by_hour in sorted(pools.items())},
    }
