"""Phases: the spans of ledger rows on one device that settlement splits windows among.

A row served whole is one phase on its `device_id`. A disaggregated row is two: its prefill
phase on `prefill_device_id` (`served_at` to `prefill_ended_at`, its prompt tokens) and its
decode phase on `device_id` (`prefill_ended_at` to `ended_at`, its answer tokens). Each phase
accumulates its own shares (`settled_*` for the row's own device, `prefill_settled_*` for the
prefill device) and is final on its own device's horizon. The row's totals (`energy_j`,
`operational_g_co2e`, `embodied_g_co2e`) are always both phases' sum: the statements here
compute them from the row's stored columns in the database, so the two devices may settle
in either order (or in two runs) and the sum stays right.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, select, text, update

from proxy.accounting.provisional import PROVISIONAL
from proxy.accounting.tables import requests as requests_table
from proxy.energy.attribution import Flight

# A prefill phase's flight id: its row's id and this suffix (both phases of one row may lie
# on one device).
PREFILL_KEY = "#prefill"


@dataclasses.dataclass(frozen=True, slots=True)
class Phase:
    """One row's time on one device, with what settlement has given it so far."""

    request_id: str
    prefill: bool  # a disaggregated row's prefill phase (else the row's own device)
    pool: str | None  # whose accounts apply: the pool (or member pool) that served it here
    start_s: float
    end_s: float
    prefill_tokens: int
    decode_tokens: int
    settled_j: float
    settled_busy_s: float
    settled_shared: bool
    settled_estimated: bool
    touched: bool  # given a share in an earlier run
    ci_g_per_kwh: float | None
    pue: float | None
    # A prefill phase's provisional figures (its own pool's grid and PUE are in their ratio).
    estimate_j: float = 0.0
    estimate_operational_g: float | None = None
    estimate_embodied_g: float | None = None

    @property
    def key(self) -> str:
        """Its flight id in the split."""
        return self.request_id + PREFILL_KEY if self.prefill else self.request_id

    def flight(self) -> Flight:
        """The span and tokens the attribution weighs."""
        return Flight(self.key, self.start_s, self.end_s, self.prefill_tokens,
                      self.decode_tokens)


def _at(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def _s(value: datetime) -> float:
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()


_ROW_SQL = (
    "SELECT request_id, COALESCE(served_pool, pool), served_at, ended_at, prompt_tokens, "
    "completion_tokens, settled_j, settled_busy_s, settled_shared, settled_estimated, "
    "ci_g_per_kwh, pue, prefill_ended_at FROM requests WHERE device_id = %(device)s "
    "AND settled_at IS NULL AND served_at IS NOT NULL AND served_at < %(end)s "
    "AND ended_at > %(start)s")
_PREFILL_SQL = (
    "SELECT request_id, prefill_pool, served_at, prefill_ended_at, prompt_tokens, "
    "prefill_settled_j, prefill_settled_busy_s, prefill_settled_shared, "
    "prefill_settled_estimated, ci_g_per_kwh, pue, prefill_energy_j, "
    "prefill_operational_g_co2e, prefill_embodied_g_co2e FROM requests "
    "WHERE prefill_device_id = %(device)s AND prefill_energy_method = 'provisional' "
    "AND served_at IS NOT NULL AND served_at < %(end)s AND prefill_ended_at > %(start)s")


def phases_on(connection: Connection, device_id: str, start_s: float,
              end_s: float) -> list[Phase]:
    """Every unsettled phase on the device that overlaps [start_s, end_s)."""
    if connection.dialect.name == "postgresql":  # the driver's cursor: plain tuples
        raw = connection.connection.driver_connection
        assert raw is not None
        bounds = {"device": device_id, "end": _at(end_s), "start": _at(start_s)}
        with raw.cursor() as cursor:
            cursor.execute(_ROW_SQL, bounds)
            found_rows = list(cursor.fetchall())
            cursor.execute(_PREFILL_SQL, bounds)
            found_prefills = list(cursor.fetchall())
    else:
        found_rows, found_prefills = _select_core(connection, device_id, start_s, end_s)
    phases = []
    for (rid, pool, served, ended, prompt, completion, settled_j, busy, shared, synthesised,
         ci, pue, prefill_end) in found_rows:
        served_s, ended_s = _s(served), _s(ended)
        if prefill_end is not None:  # only its decode phase was on this device
            start = min(max(_s(prefill_end), served_s), ended_s)
            tokens = (0, completion or 0)
        else:
            start, tokens = served_s, (prompt or 0, completion or 0)
        phases.append(Phase(rid, False, pool, start, max(ended_s, start), *tokens,
                            settled_j or 0.0, busy or 0.0, bool(shared), bool(synthesised),
                            settled_j is not None, ci, pue))
    for (rid, pool, served, prefill_end, prompt, settled_j, busy, shared, synthesised, ci, pue,
         estimate_j, estimate_op, estimate_emb) in found_prefills:
        served_s = _s(served)
        phases.append(Phase(rid, True, pool, served_s, max(_s(prefill_end), served_s),
                            prompt or 0, 0, settled_j or 0.0, busy or 0.0, bool(shared),
                            bool(synthesised), settled_j is not None, ci, pue,
                            estimate_j or 0.0, estimate_op, estimate_emb))
    return phases


def _select_core(connection: Connection, device_id: str, start_s: float, end_s: float
                 ) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The two reads of `phases_on` through SQLAlchemy (SQLite: its own datetime format)."""
    c = requests_table.c
    rows = select(
        c.request_id, func.coalesce(c.served_pool, c.pool), c.served_at, c.ended_at,
        c.prompt_tokens, c.completion_tokens, c.settled_j, c.settled_busy_s, c.settled_shared,
        c.settled_estimated, c.ci_g_per_kwh, c.pue, c.prefill_ended_at,
    ).where(c.device_id == device_id, c.settled_at.is_(None), c.served_at.is_not(None),
            c.served_at < _at(end_s), c.ended_at > _at(start_s))
    prefills = select(
        c.request_id, c.prefill_pool, c.served_at, c.prefill_ended_at, c.prompt_tokens,
        c.prefill_settled_j, c.prefill_settled_busy_s, c.prefill_settled_shared,
        c.prefill_settled_estimated, c.ci_g_per_kwh, c.pue, c.prefill_energy_j,
        c.prefill_operational_g_co2e, c.prefill_embodied_g_co2e,
    ).where(c.prefill_device_id == device_id, c.prefill_energy_method == PROVISIONAL,
            c.served_at.is_not(None), c.served_at < _at(end_s),
            c.prefill_ended_at > _at(start_s))
    return ([tuple(row) for row in connection.execute(rows)],
            [tuple(row) for row in connection.execute(prefills)])


def unsettled_prefill_devices(connection: Connection) -> list[tuple[str, str | None]]:
    """Each (prefill device, prefill pool) with a prefill phase not yet final."""
    columns = requests_table.c
    return [(device, pool) for device, pool in connection.execute(
        select(columns.prefill_device_id, columns.prefill_pool).where(
            columns.prefill_energy_method == PROVISIONAL, columns.prefill_device_id.is_not(None),
            columns.served_at.is_not(None)).distinct())]


# Column -> its new value, `{v}` naming this update's values and `{r}` the stored row (both
# phases' totals are computed from what the row holds, see the module docstring).
ROW_PARTIAL = {name: "{v}" + name for name in
               ("settled_j", "settled_busy_s", "settled_shared", "settled_estimated")}
ROW_FINAL = ROW_PARTIAL | {
    "energy_method": "{v}energy_method", "settled_at": "{v}settled_at",
    "energy_j": "{v}energy_j + COALESCE({r}prefill_energy_j, 0)",
    "operational_g_co2e": "{v}operational_g_co2e + COALESCE({r}prefill_operational_g_co2e, 0)",
    "embodied_g_co2e": "{v}embodied_g_co2e + COALESCE({r}prefill_embodied_g_co2e, 0)"}
PREFILL_PARTIAL = {"prefill_" + name: "{v}prefill_" + name for name in
                   ("settled_j", "settled_busy_s", "settled_shared", "settled_estimated")}
PREFILL_FINAL = PREFILL_PARTIAL | {
    "prefill_energy_method": "{v}prefill_energy_method",
    "prefill_energy_j": "{v}prefill_energy_j",
    "prefill_operational_g_co2e": "{v}prefill_operational_g_co2e",
    "prefill_embodied_g_co2e": "{v}prefill_embodied_g_co2e",
    "energy_j": "{r}energy_j - COALESCE({r}prefill_energy_j, 0) + {v}prefill_energy_j",
    "operational_g_co2e": "{r}operational_g_co2e - COALESCE({r}prefill_operational_g_co2e, 0)"
                          " + COALESCE({v}prefill_operational_g_co2e, 0)",
    "embodied_g_co2e": "{r}embodied_g_co2e - COALESCE({r}prefill_embodied_g_co2e, 0)"
                       " + COALESCE({v}prefill_embodied_g_co2e, 0)"}

_PG_TYPES = {"settled_shared": "bool", "settled_estimated": "bool",
             "prefill_settled_shared": "bool", "prefill_settled_estimated": "bool",
             "energy_method": "text", "prefill_energy_method": "text",
             "settled_at": "timestamptz"}


def update_phases(connection: Connection, values: list[dict[str, Any]],
                  assignments: Mapping[str, str]) -> None:
    """Update many rows by request id (`rid`) in one statement.

    PostgreSQL: `UPDATE ... FROM unnest(arrays)`, one array per value, so the per-row cost is
    a list append rather than a statement (settlement updates every row at least once).
    """
    if not values:
        return
    names = sorted({name for row in values for name in row} - {"rid"})
    if connection.dialect.name == "postgresql":
        raw = connection.connection.driver_connection
        assert raw is not None
        arrays = [[row["rid"] for row in values], *([row[n] for row in values] for n in names)]
        unnest = ", ".join(["%s::text[]", *(f"%s::{_PG_TYPES.get(n, 'float8')}[]"
                                            for n in names)])
        sets = ", ".join(f"{column} = " + sql.format(v="v.", r="r.")
                         for column, sql in assignments.items())
        with raw.cursor() as cursor:
            cursor.execute(
                f"UPDATE {requests_table.name} AS r SET {sets} FROM unnest({unnest}) "
                f"AS v(rid, {', '.join(names)}) WHERE r.request_id = v.rid", arrays)
        return
    sets = ", ".join(f"{column} = " + sql.format(v=":", r="")
                     for column, sql in assignments.items())
    # Typed parameters: SQLite stores datetimes in SQLAlchemy's own text format.
    typed = [bindparam(name, type_=requests_table.c[name].type) for name in names]
    connection.execute(text(f"UPDATE {requests_table.name} SET {sets} "
                            "WHERE request_id = :rid").bindparams(*typed), values)


def finish_late_prefills(connection: Connection, device_id: str, through: float) -> int:
    """Prefill phases whose windows closed without them keep their estimate, labelled so.

    One that was given shares before (its meter went silent since) keeps those joules, scaled
    into gCO2e at the ratio its estimate had (its own grid and PUE); its embodied estimate
    stays, as a whole row's does.
    """
    columns = requests_table.c
    late = and_(columns.prefill_device_id == device_id,
                columns.prefill_energy_method == PROVISIONAL,
                columns.prefill_ended_at <= _at(through))
    untouched = connection.execute(update(requests_table).where(
        late, columns.prefill_settled_j.is_(None)).values(
        prefill_energy_method="estimated")).rowcount
    settled_op = func.coalesce(
        columns.prefill_settled_j * columns.prefill_operational_g_co2e
        / func.nullif(columns.prefill_energy_j, 0.0), columns.prefill_operational_g_co2e)
    touched = connection.execute(update(requests_table).where(
        late, columns.prefill_settled_j.is_not(None)).values(
        prefill_energy_method="apportioned", prefill_energy_j=columns.prefill_settled_j,
        prefill_operational_g_co2e=settled_op,
        energy_j=columns.energy_j - func.coalesce(columns.prefill_energy_j, 0.0)
        + columns.prefill_settled_j,
        operational_g_co2e=columns.operational_g_co2e
        - func.coalesce(columns.prefill_operational_g_co2e, 0.0)
        + func.coalesce(settled_op, 0.0))).rowcount
    return int(untouched or 0) + int(touched or 0)
