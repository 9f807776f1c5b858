"""Offline API docs, the favicon, the optional /metrics scrape token and the alerting gauges."""

from __future__ import annotations

import re
from collections.abc import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Fake, RunningProxy, fake_pool


def _local_assets(html: str) -> list[str]:
    """Every script, stylesheet and icon a page loads; all must be on this server."""
    found = re.findall(r'(?:src|href)="([^"]+)"', html) + re.findall(r"url: '([^']+)'", html)
    assert found
    return found


def test_docs_and_redoc_load_nothing_from_the_internet(proxy: RunningProxy) -> None:
    for page, wanted in (("/docs", "swagger-ui-bundle.js"), ("/redoc", "redoc.standalone.js")):
        answer = httpx.get(proxy.root + page)
        assert answer.status_code == 200 and answer.headers["content-type"].startswith(
            "text/html")
        assert wanted in answer.text
        assert "fonts.googleapis" not in answer.text
        for url in _local_assets(answer.text):
            assert url.startswith("/"), f"{page} loads {url} from elsewhere"
            asset = httpx.get(proxy.root + url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 100, url
    assert httpx.get(proxy.root + "/docs/assets/swagger-ui.css").headers[
        "content-type"].startswith("text/css")
    assert httpx.get(proxy.root + "/docs/assets/LICENSE.redoc").status_code == 404  # only assets
    icon = httpx.get(proxy.root + "/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file
    assert httpx.get(proxy.root + "/openapi.json").json()["info"]["title"] == "sprout-proxy"


def test_metrics_are_open_by_default_and_need_the_token_once_one_is_set(
        start_proxy: Callable[..., RunningProxy], fake: Fake, pg_url: str) -> None:
    open_proxy = start_proxy([fake_pool(fake)], pg_url)
    assert httpx.get(open_proxy.root + "/metrics").status_code == 200
    open_proxy.stop()
    guarded = start_proxy([fake_pool(fake)], pg_url, metrics_token="scrape-me")
    missing = httpx.get(guarded.root + "/metrics")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_scrape_token"
    wrong = httpx.get(guarded.root + "/metrics", headers={"authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = httpx.get(guarded.root + "/metrics", headers={"authorization": "Bearer scrape-me"})
    assert right.status_code == 200 and "sprout_ledger_dropped_rows" in right.text


def test_the_alerting_gauges_describe_breakers_optimiser_and_evaluator(
        proxy: RunningProxy) -> None:
    text = httpx.get(proxy.root + "/metrics").text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    breakers = [v for (name, _), v in samples.items() if name == "sprout_backend_circuit_open"]
    assert breakers == [0.0]
    assert samples[("sprout_optimiser_cold_start", ())] == 1.0  # no verdicts yet
    assert samples[("sprout_evaluator_enabled", ())] == 0.0
    assert samples[("sprout_evaluator_last_finished_timestamp_seconds", ())] == 0.0
