"""The worker's /metrics/energy, read by the proxy's RemoteMeter over real HTTP."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from proxy.energy.base import MeterUnavailable
from proxy.energy.fakes import ConstantPowerMeter
from proxy.energy.null import NullMeter
from proxy.energy.remote import RemoteMeter
from tests.support.servers import ServerThread
from worker.meter import meter_only_app, pick_meter


def test_remote_meter_reads_a_meter_only_worker() -> None:
    server = ServerThread(meter_only_app(ConstantPowerMeter(50.0))).start()
    try:
        meter = RemoteMeter(server.root + "/metrics/energy")

        async def two_reads() -> tuple[float, float]:
            first = await meter.read()
            await asyncio.sleep(0.2)
            second = await meter.read()
            await meter.aclose()
            return first.energy_j, second.energy_j

        first, second = asyncio.run(two_reads())
        assert second - first == pytest.approx(50.0 * 0.2, rel=0.5)
        assert meter.availability().available and "fake-constant-50W" in meter.name
        assert httpx.get(server.root + "/health").json()["mode"] == "meter-only"
    finally:
        server.stop()


def test_unavailable_worker_meter_reports_why() -> None:
    server = ServerThread(meter_only_app(NullMeter("no counters on this host"))).start()
    try:
        meter = RemoteMeter(server.root + "/metrics/energy")
        with pytest.raises(MeterUnavailable, match="no counters on this host"):
            asyncio.run(meter.read())
        assert not meter.availability().available
    finally:
        server.stop()


@pytest.mark.worker
def test_the_model_worker_serves_its_meter(worker: str) -> None:
    document = httpx.get(worker.removesuffix("/v1") + "/metrics/energy").json()
    assert set(document) == {"available", "meter", "reason", "energy_j", "parts_j", "device",
                             "read_at"}
    # The device it names is the one its responses name, so rows and samples meet.
    answer = httpx.post(worker + "/chat/completions", json={
        "model": "sprout-demo-tiny", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2})
    assert answer.headers["x-sprout-device"] == document["device"]
    assert document["device"].endswith("/cpu")
    if not document["available"]:  # CI machines have no RAPL/NVML: it says why
        assert document["reason"]


def test_pick_meter() -> None:
    assert pick_meter("fake:12").name == "fake-constant-12W"
    assert pick_meter("none").availability().reason.startswith("metering disabled")
    auto = pick_meter("auto")  # here: no NVIDIA, no powercap, not macOS
    assert auto.availability().available or "nvml" in auto.availability().reason


def test_a_worker_on_two_devices_meters_both() -> None:
    # Prefill on one device and decode on another: `--meter fake:50+fake:20` (or, with real
    # counters, `auto` -> e.g. nvml:0+nvml:1) sums them and reports each part.
    meter = pick_meter("fake:50+fake:20")
    assert meter.name == "fake-constant-50W+fake-constant-20W"
    server = ServerThread(meter_only_app(meter)).start()
    try:
        document = httpx.get(server.root + "/metrics/energy").json()
        assert document["available"]
        parts = document["parts_j"]
        assert set(parts) == {"fake-constant-50W", "fake-constant-20W"}
        assert document["energy_j"] == pytest.approx(sum(parts.values()), rel=0.05)
        assert parts["fake-constant-50W"] == pytest.approx(2.5 * parts["fake-constant-20W"],
                                                           rel=0.05)
    finally:
        server.stop()


def test_a_partly_metered_machine_is_unavailable_and_says_which_part() -> None:
    from proxy.energy.composite import SumMeter

    meter = SumMeter([ConstantPowerMeter(50.0), NullMeter("no RAPL here")])
    availability = meter.availability()
    assert not availability.available and "null: no RAPL here" in availability.reason


def test_device_lists_map_to_meters() -> None:
    from worker.meter import meter_spec_for_devices

    assert meter_spec_for_devices(["cuda:0", "cuda:1"]) == "nvml:0+nvml:1"
    assert meter_spec_for_devices(["cpu", "cuda:0"]) == "rapl+nvml:0"
    assert meter_spec_for_devices(["mps"]) == "apple"
    assert pick_meter("nvml:1").name == "nvml"
