"""Live intensity providers against real-format answers; cache and fallback under failures."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from proxy.carbon.cache import CachedProvider, FallbackChain
from proxy.carbon.electricitymaps import ElectricityMapsProvider
from proxy.carbon.static import StaticProvider
from proxy.carbon.ukgrid import UKGridProvider
from proxy.carbon.watttime import WattTimeProvider
from proxy.fakes.grid_api import EM_TOKEN, WT_PASSWORD, WT_USER, GridAPIs
from tests.support.servers import ServerThread

NOW = datetime(2026, 11, 21, 22, 10, tzinfo=UTC)


@pytest.fixture
def grid() -> Iterator[tuple[GridAPIs, str]]:
    app = GridAPIs()
    server = ServerThread(app).start()
    yield app, server.root
    server.stop()


def test_electricity_maps(grid) -> None:  # type: ignore[no-untyped-def]
    _app, root = grid
    provider = ElectricityMapsProvider("DE", SecretStr(EM_TOKEN), base_url=root + "/v3")
    reading = asyncio.run(provider.current(NOW))
    assert reading.g_per_kwh == 250.0
    assert reading.source == "electricitymaps:DE:direct:estimated"
    assert reading.at == datetime(2026, 11, 21, 22, 0, tzinfo=UTC)
    wrong = ElectricityMapsProvider("DE", SecretStr("nope"), base_url=root + "/v3")
    with pytest.raises(httpx.HTTPStatusError):
        asyncio.run(wrong.current(NOW))


def test_watttime_converts_lbs_per_mwh_and_logs_in_again(grid) -> None:  # type: ignore[no-untyped-def]
    app, root = grid
    provider = WattTimeProvider("CAISO_NORTH", WT_USER, SecretStr(WT_PASSWORD), base_url=root)
    first = asyncio.run(provider.current(NOW))
    assert first.g_per_kwh == pytest.approx(250.0 * 0.45359237)
    assert "marginal" in first.source
    app.expire_token = True  # the next forecast call says 401: log in again, once
    asyncio.run(provider.current(NOW))
    assert app.calls.count("/login") == 2


def test_uk_grid_actual_then_forecast(grid) -> None:  # type: ignore[no-untyped-def]
    app, root = grid
    provider = UKGridProvider(base_url=root)
    actual = asyncio.run(provider.current(NOW))
    assert (actual.g_per_kwh, actual.source) == (250.0, "ukgrid:GB:actual")
    app.uk_actual_published = False
    forecast = asyncio.run(provider.current(NOW))
    assert (forecast.g_per_kwh, forecast.source) == (260.0, "ukgrid:GB:forecast")


def test_cache_serves_the_last_value_until_stale_then_the_chain_falls_back(grid) -> None:  # type: ignore[no-untyped-def]
    app, root = grid
    cached = CachedProvider(UKGridProvider(base_url=root), max_staleness=timedelta(hours=3),
                            timeout_s=0.3)
    chain = FallbackChain([cached, StaticProvider(300.0)])
    assert asyncio.run(chain.current(NOW)).source == "ukgrid:GB:actual"

    app.delay_s = 2.0  # the provider hangs: the timeout fires, the cached value is served
    slow = asyncio.run(chain.current(NOW + timedelta(hours=1)))
    assert (slow.g_per_kwh, slow.source) == (250.0, "ukgrid:GB:actual:cached")

    app.delay_s, app.status = 0.0, 503  # down, and the cached value is now too old
    late = asyncio.run(chain.current(NOW + timedelta(hours=4)))
    assert (late.g_per_kwh, late.source) == (300.0, "static")

    app.status = 200  # back: fresh values again
    assert asyncio.run(chain.current(NOW + timedelta(hours=5))).source == "ukgrid:GB:actual"
