"""Joules and grams through the proxy to a worker with a metered device, summing to the meter."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from proxy.accounting.db import normalise_url
from tests.conftest import MASTER_KEY
from tests.support.ledger import wait_rows, wait_settled
from tests.support.postgres import free_port
from tests.support.servers import ChildProcess

MESSAGES = [{"role": "user", "content": "Explain the grid in a sentence."}]


@pytest.mark.worker
def test_rows_are_metered_labelled_and_sum_to_the_meter(start_proxy, demo_model_dir: Path,
                                                         tmp_path: Path) -> None:
    port = free_port()
    # A simulated 50 W device (this machine has no RAPL/NVML); the worker labels it fake.
    worker = ChildProcess(
        ["-m", "worker", "--model", str(demo_model_dir), "--served-name", "sprout-demo-tiny",
         "--port", str(port), "--meter", "fake:50", "--log-level", "warning"],
        f"http://127.0.0.1:{port}/health", log_path=tmp_path / "worker.log").start()
    try:
        database_url = f"sqlite:///{tmp_path}/ledger.db"
        proxy = start_proxy([], database_url, upstream_url=f"http://127.0.0.1:{port}/v1",
                            carbon_static_g_per_kwh=200.0)
        client = proxy.client()
        time.sleep(1.0)  # the leader's sampler has read the device before the first request
        for _ in range(3):  # one at a time: each alone on the device
            client.chat.completions.create(model="sprout-demo-tiny", messages=MESSAGES,
                                           max_tokens=24, temperature=0)
            time.sleep(1.2)  # let a sample pass between them
        threads = [threading.Thread(target=lambda: client.chat.completions.create(
            model="sprout-demo-tiny", messages=MESSAGES, max_tokens=48)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        first = wait_rows(database_url, 6, timeout_s=20)
        rows = wait_settled(database_url, 6, timeout_s=30)
        admin = {"authorization": f"Bearer {MASTER_KEY}"}
        (pool,) = httpx.get(proxy.root + "/admin/pools", headers=admin).json()
        stats = httpx.get(proxy.root + "/admin/stats", headers=admin).json()
        series = httpx.get(proxy.root + "/admin/timeseries", headers=admin).json()
        (later_pool,) = httpx.get(proxy.root + "/admin/pools", headers=admin).json()
        (later,) = later_pool["devices"]
    finally:
        worker.stop()

    # Written at once, provisional; settled by the leader from the device's own counter.
    assert {r["energy_method"] for r in first} <= {"provisional", "measured", "apportioned"}
    assert all(r["energy_j"] > 0 for r in rows)
    assert {r["energy_method"] for r in rows[:3]} <= {"measured", "apportioned"}
    assert "measured" in {r["energy_method"] for r in rows[:3]}
    assert {r["energy_method"] for r in rows[3:]} == {"apportioned"}
    assert all(r["ci_g_per_kwh"] == 200.0 and r["ci_source"] == "static" for r in rows)
    assert all(r["operational_g_co2e"] == pytest.approx(r["energy_j"] / 3.6e6 * 200.0)
               for r in rows)
    assert all(r["embodied_g_co2e"] > 0 for r in rows)
    (device,) = pool["devices"]
    assert {r["device_id"] for r in rows} == {device["device_id"]}
    assert device["available"] and device["meter"].startswith("remote")
    # Conservation: what the rows carry plus the idle bucket is what was metered, and the
    # meter (50 W) agrees with the windows' length.
    with sqlite3.connect(f"{tmp_path}/ledger.db") as connection:  # one reading of the windows
        span_s, windows_j = connection.execute(
            "SELECT (julianday(max(end_at)) - julianday(min(start_at))) * 86400, "
            "sum(metered_j) FROM energy_windows").fetchone()
    assert sum(r["energy_j"] for r in rows) == pytest.approx(device["attributed_j"], rel=1e-6)
    assert device["attributed_j"] + device["idle_j"] == pytest.approx(device["metered_j"],
                                                                      rel=1e-9)
    assert windows_j == pytest.approx(50.0 * span_s, rel=0.05)
    # (/admin/pools was read before the last windows may have settled)
    assert device["metered_j"] <= windows_j + 1e-6
    # Idle energy is reported, not dropped: in /admin/stats and in the dashboard's series.
    # (Settlement goes on meanwhile: each figure lies between the two /admin/pools readings.)
    assert device["idle_j"] > 0
    for name in ("idle_j", "metered_j"):
        assert device[name] - 1e-6 <= stats["devices"][name] <= later[name] + 1e-6
    assert device["idle_j"] - 1e-6 <= sum(series["pools"]["default"]["idle_j"]) <= (
        later["idle_j"] + 1e-6)


@pytest.mark.worker
def test_the_ledger_records_speculative_decoding(start_proxy, tmp_path: Path) -> None:
    from worker.demo_model import build_demo_model

    main = build_demo_model(tmp_path / "main", seed=1)
    draft = build_demo_model(tmp_path / "draft", seed=2, hidden_size=32, layers=1)
    port = free_port()
    worker = ChildProcess(
        ["-m", "worker", "--model", str(main), "--served-name", "tiny", "--port", str(port),
         "--draft-model", str(draft), "--draft-device", "cpu", "--log-level", "warning"],
        f"http://127.0.0.1:{port}/health", log_path=tmp_path / "worker.log").start()
    try:
        database_url = f"sqlite:///{tmp_path}/ledger.db"
        proxy = start_proxy([], database_url, upstream_url=f"http://127.0.0.1:{port}/v1")
        proxy.client().chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=8,
                                               temperature=0)
        (row,) = wait_rows(database_url, 1, timeout_s=20)
    finally:
        worker.stop()
    assert row["decoding"] == "speculative" and row["status"] == "ok"


def _metered_worker(model_dir: Path, tmp_path: Path, name: str, watts: int) -> ChildProcess:
    port = free_port()
    return ChildProcess(
        ["-m", "worker", "--model", str(model_dir), "--served-name", "sprout-demo-tiny",
         "--port", str(port), "--meter", f"fake:{watts}", "--device-id", name,
         "--log-level", "warning"],
        f"http://127.0.0.1:{port}/health", log_path=tmp_path / f"{name.replace('/', '-')}.log")


@pytest.mark.worker
def test_each_phase_of_a_disaggregated_request_is_metered_on_its_own_device(
        start_proxy, demo_model_dir: Path, tmp_path: Path, pg_url: str) -> None:
    """Prefill on one worker process, decode on another, each with its own simulated meter.

    Both workers serve the tiny demo model (random weights, meaningless text: `--model demo`
    style) on the CPU; `--meter fake:W` gives each a device of constant power with its own
    counter (labelled fake), which the leader samples like any worker's `/metrics/energy`.
    """
    from proxy.pools.config import PoolConfig

    new_gpu = _metered_worker(demo_model_dir, tmp_path, "host-p/gpu-new", 200)
    old_gpu = _metered_worker(demo_model_dir, tmp_path, "host-d/gpu-old", 40)
    for process in (new_gpu, old_gpu):
        process.start()
    member = {"kind": "worker", "models": ["sprout-demo-tiny"], "read_timeout_s": 60.0}
    pools = [PoolConfig.model_validate(member | {
                 "name": "new", "base_urls": [new_gpu.health_url.removesuffix("/health") + "/v1"],
                 "accounting": {"hardware": "a100"}}),
             PoolConfig.model_validate(member | {
                 "name": "old", "base_urls": [old_gpu.health_url.removesuffix("/health") + "/v1"],
                 "accounting": {"hardware": "t4"}}),
             PoolConfig.model_validate({"name": "pd", "kind": "disaggregated",
                                        "prefill_pool": "new", "decode_pool": "old",
                                        "models": [{"name": "pd-model",
                                                    "upstream_name": "sprout-demo-tiny"}]})]
    try:
        proxy = start_proxy(pools, pg_url, carbon_static_g_per_kwh=200.0,
                            settlement_interval_s=1.0, settlement_margin_s=0.5,
                            meter_sample_s=0.25)
        client = proxy.client(timeout=60)
        time.sleep(1.5)  # the sampler has read both devices before the first request
        for index in range(4):  # one at a time, with samples between: each phase alone
            if index % 2:
                client.chat.completions.create(model="pd-model", messages=MESSAGES,
                                               max_tokens=16, temperature=0)
            else:
                for _ in client.chat.completions.create(model="pd-model", messages=MESSAGES,
                                                        max_tokens=16, stream=True):
                    pass
            time.sleep(1.0)
        wait_rows(pg_url, 4, timeout_s=20)
        rows = wait_settled(pg_url, 4, timeout_s=60)
        deadline = time.monotonic() + 60  # the prefill phases settle on their own device
        while any(r["prefill_energy_method"] == "provisional" for r in rows):
            assert time.monotonic() < deadline, [r["prefill_energy_method"] for r in rows]
            time.sleep(0.5)
            rows = wait_settled(pg_url, 4)
        admin = {"authorization": f"Bearer {MASTER_KEY}"}
        devices = {d["device_id"]: d for pool in httpx.get(
            proxy.root + "/admin/pools", headers=admin).json() for d in pool["devices"]}
    finally:
        for process in (new_gpu, old_gpu):
            process.stop()

    assert [r["decoding"] for r in rows] == ["disaggregated"] * 4
    assert {r["prefill_device_id"] for r in rows} == {"host-p/gpu-new"}
    assert {r["device_id"] for r in rows} == {"host-d/gpu-old"}
    # Both phases metered, each alone on its device.
    assert {r["prefill_energy_method"] for r in rows} == {"measured"}
    assert {r["energy_method"] for r in rows} == {"measured"}
    for row in rows:
        assert row["prefill_energy_j"] == pytest.approx(row["prefill_settled_j"])
        assert row["energy_j"] == pytest.approx(row["settled_j"] + row["prefill_energy_j"])
        assert row["prefill_energy_j"] > 0 and row["settled_j"] > 0
        assert row["operational_g_co2e"] == pytest.approx(row["energy_j"] / 3.6e6 * 200.0)
    # Each device's joules went to its own phases: the prefill device's windows hold exactly
    # the prefill joules, the decode device's the decode joules; attributed + idle = metered.
    new, old = devices["host-p/gpu-new"], devices["host-d/gpu-old"]
    engine = create_engine(normalise_url(pg_url))
    with engine.connect() as connection:
        windows = {device: connection.execute(text(
            "SELECT sum(metered_j), sum(attributed_j), sum(idle_j), "
            "extract(epoch FROM max(end_at) - min(start_at)) FROM energy_windows "
            "WHERE device_id = :device"), {"device": device}).one()
            for device in ("host-p/gpu-new", "host-d/gpu-old")}
    engine.dispose()
    for device, watts, phase_j in (
            ("host-p/gpu-new", 200.0, sum(r["prefill_energy_j"] for r in rows)),
            ("host-d/gpu-old", 40.0, sum(r["settled_j"] for r in rows))):
        metered_j, attributed_j, idle_j, span_s = windows[device]
        assert attributed_j == pytest.approx(phase_j, rel=1e-6)
        assert attributed_j + idle_j == pytest.approx(metered_j, rel=1e-9)
        assert metered_j == pytest.approx(watts * float(span_s), rel=0.05)
    assert new["available"] and old["available"]
