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
from proxy.accounting.tables import ci_readings, evaluations, quality_scores, requests
from tests.conftest import MASTER_KEY, fake_pool

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                reason="needs Debian's chromium and chromium-driver "
                                       "(scripts/test installs them)")


def _seed(database_url: str) -> None:
    """24 hours of ledger rows over two pools in two regions and three levels, the grid's
    recorded history, one evaluator run with its scores."""
    upgrade_to_head(database_url)
    # Minute 30 of the previous hour: every seeded row lies in the past, whenever this runs
    # (minute 30 of the current hour is still in the future before half past).
    now = (datetime.now(UTC) - timedelta(hours=1)).replace(minute=30, second=0, microsecond=0)
    rows = []

    def row(at: datetime, pool: str, level: str | None, task_class: str, ci: float,
            energy: float, status: str = "ok") -> None:
        rows.append(LedgerRow(
            request_id=f"seed_{uuid.uuid4().hex}", created_at=at, endpoint="chat",
            api_key_id="master", requested_model="m", pool=pool, backend="openai",
            prompt_tokens=20, completion_tokens=100, latency_ms=1000.0,
            http_status=200 if status == "ok" else 400, status=status,
            directive_level=level, task_class=task_class, energy_j=energy,
            energy_method="measured", ci_g_per_kwh=ci, ci_source="trace", pue=1.0,
            operational_g_co2e=energy / 3.6e6 * ci, embodied_g_co2e=0.0002).as_db_values())

    for hour in range(24):
        for pool, ci in (("gpu-ca", 150 + 5 * hour), ("m1-gb", 90 + 3 * (hour % 12))):
            for i, level in enumerate(("L0", "L1", "L2", "L2")):
                energy = {"L0": 1500.0, "L1": 400.0, "L2": 250.0}[level] * (0.5 if "m1" in pool
                                                                         else 1.0)
                row(now - timedelta(hours=23 - hour, minutes=i), pool, level, "open/s",
                    float(ci), energy)
    # A class served only at L2 (no L0 data: "not enough data"), an exempt request (tools)
    # and a refused one (no directive decision).
    for i in range(3):
        row(now - timedelta(hours=5, minutes=i), "gpu-ca", "L2", "code/m", 170.0, 300.0)
    row(now - timedelta(hours=4), "gpu-ca", "exempt", "extract/s", 170.0, 900.0)
    row(now - timedelta(hours=3), "gpu-ca", None, "open/s", 170.0, 0.0, status="rejected")
    readings = [{"region": region, "read_at": now - timedelta(hours=h), "g_per_kwh": value,
                 "source": "trace"}
                for h in range(0, 60) for region, value in (("CA", 150 + 4 * (h % 24)),
                                                           ("GB", 90 + 3 * (h % 12)))]
    run_at = now - timedelta(hours=12)
    engine = create_engine(normalise_url(database_url))
    with engine.begin() as connection:
        connection.execute(insert(requests), rows)
        connection.execute(insert(ci_readings), readings)
        connection.execute(insert(evaluations).values(
            evaluation_id="eval_seed", started_at=run_at,
            finished_at=run_at + timedelta(minutes=20), status="done", trigger="schedule",
            judge_model="judge", levels="L0,L1,L2", planned_prompts=40, judged_prompts=40,
            failed_prompts=0, sample_ids_json="[]"))
        connection.execute(insert(quality_scores), [
            {"evaluation_id": "eval_seed", "task_class": "open/s", "level": level, "wins": w,
             "judged": 40, "q": w / 40, "q_low": max(0, w / 40 - 0.15),
             "q_high": min(1, w / 40 + 0.15)} for level, w in (("L0", 20), ("L1", 12),
                                                               ("L2", 8))])
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
    created = httpx.post(proxy.root + "/admin/keys", headers={
        "authorization": f"Bearer {MASTER_KEY}"}, json={"name": "team-budget", "policy": {
            "limits": {"requests_per_minute": 60, "carbon_budget_g_co2e": 5}}})
    assert created.status_code == 201

    driver = _chromium(tmp_path)
    try:
        driver.get(proxy.root + "/dashboard")
        driver.find_element(By.ID, "key").send_keys(MASTER_KEY)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()

        def loaded(d: Any) -> bool:
            return bool(d.execute_script("return document.body.dataset.loaded === 'true'"))

        WebDriverWait(driver, 20).until(loaded)
        driver.find_element(By.CSS_SELECTOR, "#ranges button[data-range='7d']").click()
        WebDriverWait(driver, 20).until(
            lambda d: loaded(d) and "7 days" in d.find_element(By.ID, "status").text)
        run = driver.execute_script
        assert driver.find_element(By.ID, "status").text == "7 days, 197 requests"
        for chart, unit in (("chart-ci", "g/kWh"), ("chart-mix", "%"),
                            ("chart-carbon", "CO2e"), ("chart-energy", "J")):
            # uPlot draws ticks on the canvas; the labels it drew are on its axes.
            x_labels = run(f"return window.sproutCharts['{chart}'].axes[0]._values")
            y_labels = run(f"return window.sproutCharts['{chart}'].axes[1]._values")
            assert len(x_labels) >= 3 and all(x_labels), (chart, x_labels)
            assert len(y_labels) >= 2 and all(unit in label for label in y_labels), (
                chart, y_labels)
            assert run(f"return window.sproutCharts['{chart}'].sproutRunsDrawn") == 1, chart
        # Per region: intensity and the optimiser's trailing band (default zone, CA, GB).
        assert run("return window.sproutCharts['chart-ci'].series.length") == 1 + 3 * 3
        assert run("return window.sproutCharts['chart-ci'].bands.length") == 3
        notes = driver.find_element(By.ID, "notes-mix").text
        for level in ("L0", "L1", "L2", "exempt", "none"):
            assert level in notes
        assert "tools or JSON output" in notes and "refused before it" in notes
        classes = driver.find_element(By.ID, "table-classes").text
        assert "code/m" in classes and "not enough data" in classes
        assert "open/s" in classes and "assessed" in classes
        assert "Method:" in driver.find_element(By.ID, "method").text
        # Per pool: attributed and idle joules (none metered here).
        assert run("return window.sproutCharts['chart-energy'].series.length") == 1 + 2 * 3
        quality = driver.find_element(By.ID, "table-quality").text
        assert "open/s" in quality and "0.50" in quality
        assert "team-budget" in driver.find_element(By.ID, "table-keys").text
        # A tooltip with units under the cursor.
        over = driver.find_element(By.CSS_SELECTOR, "#chart-ci .u-over")
        from selenium.webdriver.common.action_chains import ActionChains

        # Near the right edge (offsets are from the centre): the last day has readings.
        right = over.size["width"] // 2 - 40
        ActionChains(driver).move_to_element_with_offset(over, right, 0).perform()
        tip = driver.find_element(By.CSS_SELECTOR, "#chart-ci .tooltip")
        WebDriverWait(driver, 5).until(lambda d: tip.is_displayed())
        assert "g/kWh" in tip.text
        screenshot = tmp_path / "dashboard.png"
        driver.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
        _keep(screenshot)
        driver.find_element(By.CSS_SELECTOR, "#ranges button[data-range='1h']").click()
        WebDriverWait(driver, 20).until(
            lambda d: loaded(d) and "1 hour" in d.find_element(By.ID, "status").text)
        assert run("return window.sproutCharts['chart-mix'].data[0].length") == 61  # 1-min
    finally:
        driver.quit()


def test_dashboard_with_a_wrong_key_says_so(start_proxy, fake, pg_url: str) -> None:
    proxy = start_proxy([fake_pool(fake)], pg_url)
    answer = httpx.get(proxy.root + "/admin/timeseries",
                       headers={"authorization": "Bearer wrong"})
    assert answer.status_code == 401
