"""GridAPIs: Electricity Maps, WattTime and the GB Carbon Intensity API, as one scripted server.

Answers with the providers' real response shapes (recorded from their documentation) and a
scripted value; can be told to be slow (`delay_s`) or to fail (`status`), and WattTime tokens
can be expired (`expire_token`) to exercise re-login.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

from starlette.types import Receive, Scope, Send

EM_TOKEN = "em-test-token"
WT_USER, WT_PASSWORD, WT_TOKEN = "wt-user", "wt-password", "wt-token-1"


class GridAPIs:
    """The ASGI app; change `value`, `delay_s`, `status` between calls."""

    def __init__(self) -> None:
        self.value = 250.0
        self.delay_s = 0.0
        self.status = 200
        self.uk_actual_published = True
        self.expire_token = False
        self.calls: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Dispatch by path."""
        if scope["type"] != "http":
            return
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.calls.append(path)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return await _json(send, self.status, {"error": "scripted failure"})
        if path == "/v3/carbon-intensity/latest":
            if headers.get("auth-token") != EM_TOKEN:
                return await _json(send, 401, {"error": "invalid auth-token"})
            query = dict(p.split("=", 1) for p in scope["query_string"].decode().split("&") if p)
            return await _json(send, 200, {
                "zone": query.get("zone", "DE"), "carbonIntensity": self.value,
                "datetime": "2026-11-21T22:00:00.000Z", "updatedAt": "2026-11-21T22:04:51.000Z",
                "createdAt": "2026-11-18T22:05:12.000Z",
                "emissionFactorType": query.get("emissionFactorType", "lifecycle"),
                "isEstimated": True, "estimationMethod": "TIME_SLICER_AVERAGE"})
        if path == "/login":
            expected = base64.b64encode(f"{WT_USER}:{WT_PASSWORD}".encode()).decode()
            if headers.get("authorization") != f"Basic {expected}":
                return await _json(send, 403, {"error": "bad credentials"})
            self.expire_token = False
            return await _json(send, 200, {"token": WT_TOKEN})
        if path == "/v3/forecast":
            if self.expire_token or headers.get("authorization") != f"Bearer {WT_TOKEN}":
                return await _json(send, 401, {"error": "token expired"})
            return await _json(send, 200, {
                "data": [{"point_time": "2026-11-21T22:00:00+00:00", "value": self.value},
                         {"point_time": "2026-11-21T22:05:00+00:00", "value": self.value + 3}],
                "meta": {"data_point_period_seconds": 300, "region": "CAISO_NORTH",
                         "signal_type": "co2_moer", "model": {"date": "2023-03-01"},
                         "units": "lbs_co2_per_mwh",
                         "generated_at": "2026-11-21T22:00:00+00:00",
                         "generated_at_period_seconds": 300, "warnings": []}})
        if path == "/intensity":
            intensity = {"forecast": self.value + 10,
                         "actual": self.value if self.uk_actual_published else None,
                         "index": "moderate"}
            return await _json(send, 200, {"data": [
                {"from": "2026-11-21T22:00Z", "to": "2026-11-21T22:30Z",
                 "intensity": intensity}]})
        return await _json(send, 404, {"error": "not found"})


async def _json(send: Send, status: int, document: dict[str, Any]) -> None:
    body = json.dumps(document).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
