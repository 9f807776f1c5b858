"""The dashboard in real headless Chromium: it loads data from a seeded database and plots it."""

from __future__ import annotations

import os
import shutil
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, insert

from proxy.accounting.db import normalise_url
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.record import LedgerRow
from proxy.accounting.tables import requests
from tests.conftest import MASTER_KEY, fake_pool

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Debian's chromium and chromium-driver "
                                       "(scripts/test installs them)")


def _seed(database_url: str) -> None:
    """24 hours of ledger rows over two pools in two regions and three levels."""
    upgrade_to_head(database_url)
    # Minute 30 of the previous hour: every seeded row lies in the past, whenever this runs
    # (minute 30 of the current hour is still in the future before half past).
    now = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=30, second=0, microsecond=0)
    rows = []
    for hour in range(24):
        for pool, ci in (("gpu-ca", 150 + 5 * hour), ("m1-gb", 90 + 3 * (hour % 12))):
            for i, level in enumerate(("L0", "L1", "L2", "L2")):
                energy = {"L0": 1500.0, "L1": 400.0, "L2": 250.0}[level] * (0.5 if "m1" in pool
                                                                         else 1.0)
                row = LedgerRow(
                    request_id=f"seed_{uuid.uuid4().hex}",
                    created_at=now - timedelta(hours=23 - hour, minutes=i), endpoint="chat",
                    api_key_id="master", requested_model="m", pool=pool, backend="openai",
                    prompt_tokens=20, completion_tokens=100, latency_ms=1000.0,
                    http_status=200, status="ok", directive_level=level,
                    task_class="open/s", energy_j=energy, energy_method="measured",
                    ci_g_per_kwh=float(ci), ci_source="trace", pue=1.0,
                    operational_g_co2e=energy / 3.6e6 * ci, embodied_g_co2e=0.0002)
                rows.append(row.as_db_values())
    engine = create_engine(normalise_url(database_url))
    with engine.begin() as connection:
        connection.execute(insert(requests), rows)
    engine.dispose()


def _chromium(tmp_path: Path) -> Any:
    """Headless Chromium that can reach 127.0.0.1 only (no CDN could rescue a page)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1280,900",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                 f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(DRIVER), options=options)


def _keep(screenshot: Path) -> None:
    keep = os.environ.get("SPROUT_SCREENSHOT_DIR")
    if keep:  # to look at it: SPROUT_SCREENSHOT_DIR=var scripts/test tests/e2e
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(screenshot, Path(keep) / screenshot.name)


def test_api_docs_render_offline_in_headless_chromium(start_proxy, fake, pg_url: str,
                                                      tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proxy = start_proxy([fake_pool(fake)], pg_url)
    driver = _chromium(tmp_path)
    try:
        driver.get(proxy.root + "/docs")
        WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock"))
        assert "sprout-proxy" in driver.find_element(By.CSS_SELECTOR, ".swagger-ui .title").text
        paths = {e.text for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
        assert "/v1/chat/completions" in paths and "/admin/keys/{key_id}" in paths
        driver.save_screenshot(str(tmp_path / "docs.png"))
        _keep(tmp_path / "docs.png")
        driver.get(proxy.root + "/redoc")
        WebDriverWait(driver, 30).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, ".api-content h1"))
        assert "sprout-proxy" in driver.find_element(By.CSS_SELECTOR, ".api-content h1").text
        driver.save_screenshot(str(tmp_path / "redoc.png"))
        _keep(tmp_path / "redoc.png")
    finally:
        driver.quit()


def test_dashboard_plots_render_in_headless_chromium(start_proxy, fake, pg_url: str,
                                                     tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _seed(pg_url)
    proxy = start_proxy([fake_pool(fake)], pg_url)
    assert httpx.get(proxy.root + "/dashboard").headers["content-type"].startswith("text/html")

    driver = _chromium(tmp_path)
    try:
        driver.get(proxy.root + "/dashboard")
        driver.find_element(By.ID, "key").send_keys(MASTER_KEY)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        WebDriverWait(driver, 20).until(
            lambda d: d.execute_script("return document.body.dataset.loaded === 'true'"))
        count = driver.execute_script
        assert count("return document.querySelectorAll('#chart-ci path').length") == 2
        assert count("return document.querySelectorAll('#chart-ci circle').length") == 48
        assert count("return document.querySelectorAll('#chart-mix rect').length") == 24 * 3
        assert count("return document.querySelectorAll('#chart-carbon path').length") == 2
        # Per pool: its requests' joules and its devices' idle joules (none metered here).
        assert count("return document.querySelectorAll('#chart-energy rect').length") == 4
        legend = driver.find_element(By.ID, "legend-energy").text
        assert "(idle)" in legend
        status = driver.find_element(By.ID, "status").text
        assert status == "24 hours, 192 requests"
        screenshot = tmp_path / "dashboard.png"
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
        _keep(screenshot)
    finally:
        driver.quit()


def test_dashboard_with_a_wrong_key_says_so(start_proxy, fake, pg_url: str) -> None:
    proxy = start_proxy([fake_pool(fake)], pg_url)
    answer = httpx.get(proxy.root + "/admin/timeseries",
                       headers={"authorization": "Bearer wrong"})
    assert answer.status_code == 401
