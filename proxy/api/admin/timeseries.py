"""`/admin/timeseries`: the dashboard's series over the last 1 h, 24 h, 7 d or 30 d.

Client traffic only (evaluator rows are marked on the time axis instead). Buckets are sized
so each range has 60 to 168 points: 1 min for an hour, 15 min for a day, 1 h for a week,
6 h for a month. Grid intensity per region comes from the one recorded history
(`ci_readings`) with the optimiser's trailing min/max band: for each bucket, the min and max
over the `optimiser_trailing_days` before its end, as the optimiser computes them (causal).
Carbon saved against always-L0 follows `/admin/stats`' method, and a class without L0 data in
the period says "not enough data" instead of claiming a saving.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import Engine, Integer, desc, func, select

from proxy.accounting.tables import (
    ci_readings,
    energy_devices,
    energy_windows,
    evaluations,
    quality_scores,
    requests,
)
from proxy.api.admin.deps import AdminDep
from proxy.api.admin.stats import METHOD, MIN_ROWS, Counterfactual

router = APIRouter(prefix="/admin", tags=["admin"])

Range = Literal["1h", "24h", "7d", "30d"]
RANGES: dict[str, tuple[int, int]] = {  # range -> (span_s, bucket_s)
    "1h": (3600, 60), "24h": (86400, 900), "7d": (7 * 86400, 3600), "30d": (30 * 86400, 21600)}
NO_DECISION = "none"
FIXED_NOTES = {
    "off": "directives switched off, by the client's X-Sprout-Directive: off header or the "
           "key's policy: sent unchanged",
    "exempt": "left unshortened: tools or JSON output (a shorter answer could break a schema), "
              "or a token-id prompt that cannot carry text",
    NO_DECISION: "no directive decision: embeddings, and requests refused before it (bad "
                 "input, wrong key, a key's limit or carbon budget)",
}


@router.get("/timeseries", summary="Series for the dashboard: grid, mix, carbon, energy")
async def timeseries(state: AdminDep, span: Annotated[Range, Query(alias="range")] = "24h",
                     until: datetime | None = None) -> dict[str, Any]:
    """Per bucket: requests by level, gCO2e and saved vs L0; per region, pool; runs; quality."""
    span_s, bucket_s = RANGES[span]
    until = (until or datetime.now(UTC)).astimezone(UTC)
    since = until - timedelta(seconds=span_s)
    trailing = timedelta(days=state.settings.optimiser_trailing_days)
    data = await asyncio.to_thread(_read, state.engine, since, until, bucket_s, trailing)
    start = int(since.timestamp()) // bucket_s * bucket_s
    times = list(range(start, int(until.timestamp()) + 1, bucket_s))
    regions: dict[str, list[str]] = collections.defaultdict(list)
    for pool in state.registry.pools:
        regions[pool.config.accounting.region or ""].append(pool.name)
    catalogue = state.serving.director.catalogue
    notes = {d.level: (f"directive \"{d.text}\"" if d.text else "no directive (the baseline)")
             for d in catalogue.directives} | FIXED_NOTES
    return {"range": span, "since": since, "until": until, "bucket_s": bucket_s,
            "times": times, "level_notes": notes, "saved_method": METHOD,
            **_traffic(data["rows"], times),
            "regions": _regions(data["readings"], regions, times, bucket_s, trailing),
            "pools": _pools(data["rows"], data["idle"], times,
                            [pool.name for pool in state.registry.pools]),
            "evaluations": data["evaluations"], "quality": data["quality"]}


def _bucket(engine: Engine, column: Any, bucket_s: int) -> Any:
    """Epoch seconds of a timestamp's bucket start, per dialect."""
    if engine.dialect.name == "postgresql":
        return func.floor(func.extract("epoch", column) / bucket_s) * bucket_s
    return func.cast(func.strftime("%s", column), Integer) // bucket_s * bucket_s


def _read(engine: Engine, since: datetime, until: datetime, bucket_s: int,
          trailing: timedelta) -> dict[str, Any]:
    columns = requests.c
    bucket = _bucket(engine, columns.created_at, bucket_s).label("bucket")
    traffic = (select(bucket, columns.pool, columns.directive_level, columns.task_class,
                      func.count().label("requests"),
                      func.coalesce(func.sum(columns.energy_j), 0.0).label("energy_j"),
                      func.count(columns.energy_j).label("metered"),
                      func.coalesce(func.sum(columns.operational_g_co2e), 0.0).label(
                          "operational"),
                      func.coalesce(func.sum(columns.embodied_g_co2e), 0.0).label("embodied"))
               .where(columns.created_at >= since, columns.created_at < until,
                      columns.is_evaluator.is_(False))
               .group_by(bucket, columns.pool, columns.directive_level, columns.task_class))
    window_end = _bucket(engine, energy_windows.c.end_at, bucket_s).label("bucket")
    idle = (select(energy_devices.c.pools, window_end, func.sum(energy_windows.c.idle_j))
            .join(energy_devices, energy_devices.c.device_id == energy_windows.c.device_id)
            .where(energy_windows.c.end_at >= since, energy_windows.c.end_at < until)
            .group_by(energy_devices.c.pools, window_end))
    readings = (select(ci_readings.c.region, ci_readings.c.read_at, ci_readings.c.g_per_kwh)
                .where(ci_readings.c.read_at >= since - trailing, ci_readings.c.read_at < until)
                .order_by(ci_readings.c.read_at))
    runs = (select(evaluations).where(evaluations.c.started_at < until, (
        evaluations.c.finished_at.is_(None)) | (evaluations.c.finished_at >= since))
            .order_by(evaluations.c.started_at))
    latest = (select(evaluations.c.evaluation_id).where(evaluations.c.status == "done")
              .order_by(desc(evaluations.c.finished_at)).limit(1).scalar_subquery())
    scores = select(quality_scores).where(quality_scores.c.evaluation_id == latest)
    with engine.connect() as connection:
        rows = [dict(row._mapping) for row in connection.execute(traffic)]
        idle_j: dict[tuple[str, int], float] = collections.defaultdict(float)
        for pools, at, joules in connection.execute(idle):
            names = [name for name in (pools or "").split(",") if name]
            for name in names:  # a device serving several pools splits its idle evenly
                idle_j[(name, int(at))] += float(joules or 0.0) / len(names)
        found = [(region, _aware(at).timestamp(), float(value))
                 for region, at, value in connection.execute(readings)]
        runs_found = [{"evaluation_id": r.evaluation_id, "status": r.status,
                       "trigger": r.trigger, "judged_prompts": r.judged_prompts,
                       "started_at": _aware(r.started_at).timestamp(),
                       "finished_at": _aware(r.finished_at).timestamp() if r.finished_at
                       else None} for r in connection.execute(runs)]
        quality = [{"task_class": r.task_class, "level": r.level, "q": r.q, "q_low": r.q_low,
                    "q_high": r.q_high, "judged": r.judged} for r in connection.execute(scores)]
    for row in rows:
        row["bucket"] = int(row["bucket"])
    return {"rows": rows, "idle": idle_j, "readings": found, "evaluations": runs_found,
            "quality": sorted(quality, key=lambda q: (q["task_class"], q["level"]))}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _traffic(rows: list[dict[str, Any]], times: list[int]) -> dict[str, Any]:
    """Requests by level, gCO2e emitted, saved vs L0 and not assessed, per bucket and class."""
    index = {at: i for i, at in enumerate(times)}
    counterfactual = Counterfactual(rows)
    n = len(times)
    total = [0] * n
    levels: dict[str, list[int]] = collections.defaultdict(lambda: [0] * n)
    emitted, saved, unassessed = [0.0] * n, [0.0] * n, [0.0] * n
    classes: dict[str, dict[str, Any]] = collections.defaultdict(lambda: {
        "requests": 0, "emitted_g_co2e": 0.0, "saved_g_co2e": 0.0,
        "not_assessed_g_co2e": 0.0, "shortened": 0, "assessed": 0,
        "levels": collections.Counter()})
    for row in rows:
        i = index.get(row["bucket"])
        if i is None:
            continue
        level = row["directive_level"] or NO_DECISION
        carbon = float(row["operational"]) + float(row["embodied"])
        total[i] += row["requests"]
        levels[level][i] += row["requests"]
        emitted[i] += carbon
        cell = classes[row["task_class"] or "(none)"]
        cell["requests"] += row["requests"]
        cell["emitted_g_co2e"] += carbon
        cell["levels"][level] += row["requests"]
        shortened = level.startswith("L") and level != "L0"
        cell["shortened"] += row["requests"] if shortened else 0
        grams = counterfactual.saved_g(row, carbon)
        if grams is None:
            unassessed[i] += carbon
            cell["not_assessed_g_co2e"] += carbon
        else:
            saved[i] += grams
            cell["saved_g_co2e"] += grams
            cell["assessed"] += row["requests"] if shortened else 0
    return {
        "requests": total, "levels": dict(sorted(levels.items())),
        "carbon": {"emitted_g_co2e": emitted, "saved_g_co2e": saved,
                   "not_assessed_g_co2e": unassessed},
        "classes": [_class_summary(name, cell) for name, cell in sorted(classes.items())],
    }


def _class_summary(name: str, cell: dict[str, Any]) -> dict[str, Any]:
    if not cell["shortened"]:
        status = "nothing shortened"
    elif not cell["not_assessed_g_co2e"]:
        status = "assessed"
    else:
        status = "partly assessed" if cell["assessed"] else "not enough data"
    detail = {
        "nothing shortened": "served only at L0, off or exempt: no saving to claim",
        "assessed": "ledger means at L0 and at each served level, this period",
        "partly assessed": f"some served levels have fewer than {MIN_ROWS} requests with "
                           "energy (or L0 has): the saving shown counts only the others",
        "not enough data": f"fewer than {MIN_ROWS} requests with energy at L0 or at the "
                           "served levels in this period: no saving is claimed",
    }[status]
    return {"task_class": name, "requests": cell["requests"], "levels": dict(cell["levels"]),
            "emitted_g_co2e": cell["emitted_g_co2e"],
            "saved_g_co2e": None if status == "not enough data" else cell["saved_g_co2e"],
            "not_assessed_g_co2e": cell["not_assessed_g_co2e"], "status": status,
            "detail": detail}


def _regions(readings: list[tuple[str, float, float]], regions: dict[str, list[str]],
             times: list[int], bucket_s: int, trailing: timedelta) -> dict[str, Any]:
    """Mean intensity per bucket and the optimiser's trailing min/max at its end, per region."""
    by_region: dict[str, tuple[list[float], list[float]]] = collections.defaultdict(
        lambda: ([], []))
    for region, at, value in readings:
        stamps, values = by_region[region]
        stamps.append(at)
        values.append(value)
    found = {}
    window_s = trailing.total_seconds()
    for region in sorted(set(regions) | set(by_region)):
        stamps, values = by_region.get(region, ([], []))
        mean: list[float | None] = []
        low: list[float | None] = []
        high: list[float | None] = []
        for start in times:
            first, last = bisect.bisect_left(stamps, start), bisect.bisect_left(
                stamps, start + bucket_s)
            inside = values[first:last]
            mean.append(sum(inside) / len(inside) if inside else None)
            back = bisect.bisect_left(stamps, start + bucket_s - window_s)
            trail = values[back:last]
            low.append(min(trail) if trail else None)
            high.append(max(trail) if trail else None)
        found[region or "default"] = {"pools": regions.get(region, []), "ci_g_per_kwh": mean,
                                      "trailing_min": low, "trailing_max": high}
    return found


def _pools(rows: list[dict[str, Any]], idle: dict[tuple[str, int], float], times: list[int],
           names: list[str]) -> dict[str, Any]:
    """Joules attributed to each pool's requests and its devices' idle joules, per bucket."""
    index = {at: i for i, at in enumerate(times)}
    pools = sorted({*names, *(row["pool"] for row in rows if row["pool"]),
                    *(name for name, _ in idle)})
    found: dict[str, dict[str, list[float]]] = {
        name: {"energy_j": [0.0] * len(times), "idle_j": [0.0] * len(times)} for name in pools}
    for row in rows:
        i = index.get(row["bucket"])
        if row["pool"] and i is not None:
            found[row["pool"]]["energy_j"][i] += float(row["energy_j"])
    for (name, at), joules in idle.items():
        i = index.get(at)
        if i is not None:
            found[name]["idle_j"][i] += joules
    return found
