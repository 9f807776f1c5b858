"""Reads and writes the optimiser needs (never commits: callers own the transaction)."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, desc, func, insert, literal, select

from proxy.accounting.tables import (
    evaluations,
    judgments,
    optimiser_runs,
    predictors,
    requests,
    usage_hourly,
)
from proxy.optimiser.inputs import DecayedUsage, Verdict


def _as_aware(value: datetime, like: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns.
    return value.replace(tzinfo=like.tzinfo) if value.tzinfo is None else value


def decayed_usage(connection: Connection, now: datetime, since: datetime,
                  half_life_h: float) -> list[DecayedUsage]:
    """Successful requests with a task class and level, decayed and summed by the database.

    Reads `usage_hourly` (kept by triggers as rows land, migration 0010), never the raw ledger,
    and returns one row per (class, level, evaluator or not) whatever the traffic: nothing
    proportional to the ledger crosses into the process. Each hour weighs its rows by their
    mean age, `decay_weight` written in SQL; the hour holding `since` is read whole.
    """
    columns = usage_hourly.c
    age_h = (literal(now.timestamp()) - columns.hour * 3600
             - columns.offset_s / columns.requests) / 3600
    weight = func.exp(literal(-math.log(2) / half_life_h) * age_h)
    query = (
        select(columns.task_class, columns.directive_level, columns.is_evaluator,
               func.sum(columns.requests * weight).label("requests"),
               func.sum(columns.metered_j * weight).label("metered_j"),
               func.sum(columns.unmetered_output_tokens * weight).label("tokens"),
               func.sum(columns.latency_ms * weight).label("latency_ms"))
        .where(columns.hour >= math.floor(since.timestamp() / 3600), columns.requests > 0)
        .group_by(columns.task_class, columns.directive_level, columns.is_evaluator)
    )
    return [
        DecayedUsage(task_class=row.task_class, level=row.directive_level,
                     requests=float(row.requests), metered_j=float(row.metered_j),
                     unmetered_output_tokens=float(row.tokens),
                     latency_s=float(row.latency_ms) / 1000.0,
                     is_evaluator=bool(row.is_evaluator))
        for row in connection.execute(query)
    ]


def served_since(connection: Connection, since: datetime) -> int:
    """Client requests (not the evaluator's) that `usage_buckets` counts, since a time."""
    columns = requests.c
    query = select(func.count()).select_from(requests).where(
        columns.created_at >= since, columns.status == "ok", columns.is_evaluator.is_(False),
        columns.task_class.is_not(None), columns.directive_level.is_not(None))
    return int(connection.execute(query).scalar_one())


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


def latest_predictor_version(connection: Connection) -> str | None:
    """The version of the newest published learned-class predictor, if any (one index read)."""
    version: str | None = connection.execute(select(predictors.c.version).order_by(
        desc(predictors.c.fitted_at)).limit(1)).scalar()
    return version


def predictor(connection: Connection, version: str) -> dict[str, Any] | None:
    """A published predictor's row, its JSON documents parsed."""
    row = connection.execute(select(predictors).where(predictors.c.version == version)).first()
    if row is None:
        return None
    values = dict(row._mapping)
    values["model"] = json.loads(values.pop("model_json"))
    values["heldout"] = json.loads(values.pop("heldout_json"))
    values["fitted_at"] = _as_aware(values["fitted_at"], datetime.now(UTC))
    return values
