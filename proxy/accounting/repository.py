"""Reads and writes the optimiser needs (never commits: callers own the transaction)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, desc, func, insert, select

from proxy.accounting.tables import evaluations, judgments, optimiser_runs, requests
from proxy.optimiser.inputs import Usage, Verdict


def _as_aware(value: datetime, like: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns.
    return value.replace(tzinfo=like.tzinfo) if value.tzinfo is None else value


def recent_usage(connection: Connection, now: datetime, since: datetime,
                 limit: int = 100_000) -> list[Usage]:
    """Successful client requests with a task class and directive level, newest first."""
    columns = requests.c
    query = (
        select(columns.created_at, columns.task_class, columns.directive_level,
               columns.completion_tokens, columns.latency_ms, columns.energy_j,
               columns.is_evaluator)
        .where(columns.created_at >= since, columns.status == "ok",
               columns.task_class.is_not(None), columns.directive_level.is_not(None))
        .order_by(desc(columns.created_at))
        .limit(limit)
    )
    return [
        Usage(task_class=row.task_class, level=row.directive_level,
              completion_tokens=row.completion_tokens or 0, latency_s=row.latency_ms / 1000.0,
              energy_j=row.energy_j, is_evaluator=bool(row.is_evaluator),
              age_h=(now - _as_aware(row.created_at, now)).total_seconds() / 3600)
        for row in connection.execute(query)
    ]


def output_lengths(connection: Connection, since: datetime
                   ) -> list[tuple[str | None, str | None, str, float, int]]:
    """Mean completion tokens per (task class, level, pool) of recent successful requests."""
    columns = requests.c
    query = (
        select(columns.task_class, columns.directive_level, columns.pool,
               func.avg(columns.completion_tokens), func.count())
        .where(columns.created_at >= since, columns.status == "ok",
               columns.pool.is_not(None), columns.completion_tokens.is_not(None),
               columns.usage_estimated.is_(False), columns.endpoint != "embeddings")
        .group_by(columns.task_class, columns.directive_level, columns.pool)
    )
    return [(row[0], row[1], row[2], float(row[3]), int(row[4]))
            for row in connection.execute(query)]


def recent_verdicts(connection: Connection, now: datetime, since: datetime) -> list[Verdict]:
    """Successful judge verdicts since a time."""
    query = select(judgments.c.judged_at, judgments.c.task_class, judgments.c.winner_level).where(
        judgments.c.judged_at >= since, judgments.c.winner_level.is_not(None))
    return [
        Verdict(row.task_class, row.winner_level,
                (now - _as_aware(row.judged_at, now)).total_seconds() / 3600)
        for row in connection.execute(query)
    ]


def add_optimiser_run(connection: Connection, values: dict[str, Any]) -> None:
    """Persist one solve."""
    connection.execute(insert(optimiser_runs).values(**values))


def latest_optimiser_run(connection: Connection) -> dict[str, Any] | None:
    """The newest solve (followers publish its allocation)."""
    row = connection.execute(
        select(optimiser_runs).order_by(desc(optimiser_runs.c.ran_at)).limit(1)).first()
    if row is None:
        return None
    values = dict(row._mapping)
    values["allocation"] = json.loads(values["allocation_json"])
    return values


def last_finished_evaluation(connection: Connection) -> datetime | None:
    """When the latest completed evaluator run finished (UTC), if any."""
    found: datetime | None = connection.execute(select(func.max(evaluations.c.finished_at)).where(
        evaluations.c.status == "done")).scalar()
    if found is None:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)
