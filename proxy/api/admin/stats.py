"""`/admin/stats`: totals per group, and carbon saved against serving everything at L0.

Saved carbon is a counterfactual, estimated: a row served at level l of task class c would
have used E[c, L0] / E[c, l] times its energy (and busy time) at L0, with E the mean energy
per request in the same period from the ledger. Where a class has fewer than MIN_ROWS rows
with energy at L0 or at l in the period, nothing is claimed: the row's gCO2e is reported as
`not_assessed_g_co2e` ("not enough data"). No paper's ratio stands in for missing data: a
borrowed ratio once claimed more saving than the carbon emitted. The response states this
method.
"""

from __future__ import annotations

import asyncio
import collections
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import Engine, func, select

from proxy.accounting import windows
from proxy.accounting.tables import requests
from proxy.api.admin.deps import AdminDep

router = APIRouter(prefix="/admin", tags=["admin"])

GroupBy = Literal["none", "key", "pool", "model", "class", "level", "hour"]
MIN_ROWS = 5  # rows with energy per (class, level) before a mean counts as data
METHOD = ("estimated counterfactual: each row's gCO2e scaled by the ratio of its task class's "
          "mean energy per request at L0 to that at its served level, both from the ledger in "
          f"the same period; a class with fewer than {MIN_ROWS} such rows at L0 or at the "
          "served level is 'not enough data': no saving is claimed for its rows (their gCO2e "
          "is counted in not_assessed_g_co2e). L0, off and exempt rows save nothing.")


class Group(BaseModel):
    """Totals of one group."""

    group: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    energy_j: float
    operational_g_co2e: float
    embodied_g_co2e: float
    saved_vs_l0_g_co2e: float
    # gCO2e of rows whose saving could not be assessed (no L0 data for their class).
    not_assessed_g_co2e: float = 0.0


class DeviceEnergy(BaseModel):
    """Fleet-wide settlement over the period: what the devices' meters (or estimates) said.

    metered = attributed (to rows) + idle (no request on the device): idle energy is real
    energy the fleet drew, reported here rather than dropped.
    """

    metered_j: float
    attributed_j: float
    idle_j: float


class Stats(BaseModel):
    """The answer."""

    since: datetime
    until: datetime
    group_by: GroupBy
    groups: list[Group]
    devices: DeviceEnergy
    saved_method: str


@router.get("/stats", summary="Requests, tokens, joules, gCO2e and carbon saved vs L0")
async def stats(state: AdminDep, since: datetime | None = None, until: datetime | None = None,
                group_by: GroupBy = "none") -> Stats:
    """Totals over client traffic (evaluator traffic is excluded) per group."""
    until = until or datetime.now(UTC)
    since = since or until - timedelta(days=1)
    rows = await asyncio.to_thread(_aggregate, state.engine, since, until, group_by)
    devices = await asyncio.to_thread(_device_energy, state.engine, since, until)
    return Stats(since=since, until=until, group_by=group_by, groups=_groups(rows),
                 devices=DeviceEnergy(**devices), saved_method=METHOD)


def _device_energy(engine: Engine, since: datetime, until: datetime) -> dict[str, float]:
    with engine.connect() as connection:
        return windows.totals(connection, since, until)


def hour_of(engine: Engine, column: Any) -> Any:
    """An hour bucket ("YYYY-MM-DDTHH:00") of a timestamp column, per dialect."""
    if engine.dialect.name == "postgresql":
        return func.to_char(func.date_trunc("hour", column), 'YYYY-MM-DD"T"HH24:00')
    return func.strftime("%Y-%m-%dT%H:00", column)


def group_column(engine: Engine, group_by: GroupBy) -> Any:
    """The SQL expression a `group_by` value groups on (hour buckets per dialect)."""
    columns = requests.c
    if group_by == "hour":
        return hour_of(engine, columns.created_at)
    return {"none": None, "key": columns.api_key_id, "pool": columns.pool,
            "model": columns.requested_model, "class": columns.task_class,
            "level": columns.directive_level}[group_by]


def _aggregate(engine: Engine, since: datetime, until: datetime,
               group_by: GroupBy) -> list[dict[str, Any]]:
    columns = requests.c
    group = group_column(engine, group_by)
    keys = [columns.task_class, columns.directive_level]
    selected = [*keys, func.count().label("requests"),
                func.coalesce(func.sum(columns.prompt_tokens), 0).label("prompt_tokens"),
                func.coalesce(func.sum(columns.completion_tokens), 0).label("completion_tokens"),
                func.coalesce(func.sum(columns.energy_j), 0.0).label("energy_j"),
                func.count(columns.energy_j).label("metered"),
                func.coalesce(func.sum(columns.operational_g_co2e), 0.0).label("operational"),
                func.coalesce(func.sum(columns.embodied_g_co2e), 0.0).label("embodied")]
    if group is not None:
        selected.insert(0, group.label("grp"))
        keys.insert(0, group)
    query = select(*selected).where(columns.created_at >= since, columns.created_at < until,
                                    columns.is_evaluator.is_(False)).group_by(*keys)
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(query)]


class Counterfactual:
    """Carbon a group of rows would have emitted at L0 (see the module docstring)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        # Mean energy per (class, level) over the whole period, from aggregated rows
        # carrying `energy_j` (sum) and `metered` (count of rows with energy).
        sums: dict[tuple[str | None, str | None], list[float]] = collections.defaultdict(
            lambda: [0.0, 0.0])
        for row in rows:
            cell = sums[(row["task_class"], row["directive_level"])]
            cell[0] += float(row["energy_j"])
            cell[1] += int(row["metered"])
        self._means = {key: total / count for key, (total, count) in sums.items()
                       if count >= MIN_ROWS}

    def saved_g(self, row: dict[str, Any], carbon_g: float) -> float | None:
        """Grams saved against L0 by rows of this class and level emitting `carbon_g`.

        None: not enough data to say (the class lacks L0 or level rows in the period).
        """
        ratio = l0_ratio(row["task_class"], row["directive_level"], self._means)
        return None if ratio is None else carbon_g * (ratio - 1)


def _groups(rows: list[dict[str, Any]]) -> list[Group]:
    counterfactual = Counterfactual(rows)
    totals: dict[str | None, dict[str, float]] = collections.defaultdict(
        lambda: collections.defaultdict(float))
    for row in rows:
        bucket = totals[row.get("grp")]
        for name in ("requests", "prompt_tokens", "completion_tokens", "energy_j"):
            bucket[name] += float(row[name])
        carbon = float(row["operational"]) + float(row["embodied"])
        bucket["operational"] += float(row["operational"])
        bucket["embodied"] += float(row["embodied"])
        saved = counterfactual.saved_g(row, carbon)
        if saved is None:
            bucket["not_assessed"] += carbon
        else:
            bucket["saved"] += saved
    return [Group(group=None if key is None else str(key), requests=int(v["requests"]),
                  prompt_tokens=int(v["prompt_tokens"]),
                  completion_tokens=int(v["completion_tokens"]), energy_j=v["energy_j"],
                  operational_g_co2e=v["operational"], embodied_g_co2e=v["embodied"],
                  saved_vs_l0_g_co2e=v["saved"], not_assessed_g_co2e=v["not_assessed"])
            for key, v in sorted(
                      totals.items(), key=lambda item: str(item[0]))]


def l0_ratio(task_class: str | None, level: str | None,
             means: dict[tuple[str | None, str | None], float]) -> float | None:
    """How much more a row would have used at L0; None when its class lacks the data.

    Rows without a shortening level (L0, off, exempt, none) would have used the same: 1.0.
    """
    if level is None or level in ("L0", "off", "exempt"):
        return 1.0
    served, baseline = means.get((task_class, level)), means.get((task_class, "L0"))
    if served and baseline:
        return baseline / served
    return None
