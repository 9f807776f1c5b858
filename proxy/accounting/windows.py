"""Reads of the settlement tables: energy per device, idle and metered totals (admin, stats)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, select

from proxy.accounting.tables import energy_devices, energy_windows


def devices(connection: Connection, since: datetime | None = None) -> list[dict[str, Any]]:
    """Every known device with its meter state and window totals (since a time, or all)."""
    columns = energy_windows.c
    query = select(columns.device_id, func.sum(columns.metered_j), func.sum(columns.attributed_j),
                   func.sum(columns.idle_j), func.count()).group_by(columns.device_id)
    if since is not None:
        query = query.where(columns.end_at >= since)
    totals = {row[0]: row[1:] for row in connection.execute(query)}
    answer = []
    for row in connection.execute(select(energy_devices).order_by(energy_devices.c.device_id)):
        metered, attributed, idle, windows = totals.get(row.device_id, (0.0, 0.0, 0.0, 0))
        answer.append({
            "device_id": row.device_id, "pools": (row.pools or "").split(",") if row.pools else [],
            "meter": row.meter, "available": row.available, "reason": row.reason,
            "last_sample_at": row.last_sample_at, "settled_through": row.settled_through,
            "metered_j": float(metered or 0.0), "attributed_j": float(attributed or 0.0),
            "idle_j": float(idle or 0.0), "windows": int(windows or 0)})
    return answer


def totals(connection: Connection, since: datetime, until: datetime) -> dict[str, float]:
    """Metered, attributed and idle joules of windows ending in [since, until)."""
    columns = energy_windows.c
    row = connection.execute(select(
        func.coalesce(func.sum(columns.metered_j), 0.0),
        func.coalesce(func.sum(columns.attributed_j), 0.0),
        func.coalesce(func.sum(columns.idle_j), 0.0)).where(
        columns.end_at >= since, columns.end_at < until)).one()
    return {"metered_j": float(row[0]), "attributed_j": float(row[1]), "idle_j": float(row[2])}
