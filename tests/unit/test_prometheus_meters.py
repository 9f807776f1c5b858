"""DCGM and Kepler meters against recorded exporter scrapes, served over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import httpx
import pytest

from proxy.energy import exposition_samples as samples
from proxy.energy.base import EnergyMeter, EnergySample, MeterUnavailable
from proxy.energy.dcgm import DCGMMeter
from proxy.energy.factory import build_meter
from proxy.energy.fakes import PrometheusExpositionFake
from proxy.energy.kepler import KeplerMeter
from proxy.energy.null import NullMeter
from proxy.pools.config import PoolConfig
from tests.support.servers import ServerThread

GPU0, GPU1, GPU2, GPU3 = samples.DCGM_UUIDS


@contextmanager
def exporter(responses: Sequence[str | int]) -> Iterator[tuple[str, PrometheusExpositionFake]]:
    fake = PrometheusExpositionFake(responses)
    server = ServerThread(fake).start()
    try:
        yield server.root + "/metrics", fake
    finally:
        server.stop()


def read_all(meter: EnergyMeter, times: int) -> list[EnergySample]:
    async def scenario() -> list[EnergySample]:
        try:
            return [await meter.read() for _ in range(times)]
        finally:
            await meter.aclose()

    return asyncio.run(scenario())


def deltas_j(readings: list[EnergySample]) -> list[float]:
    return [(later - earlier).energy_j for earlier, later in itertools.pairwise(readings)]


def unavailable_reason(meter: EnergyMeter) -> str:
    async def scenario() -> str:
        try:
            with pytest.raises(MeterUnavailable) as raised:
                await meter.read()
            return str(raised.value)
        finally:
            await meter.aclose()

    reason = asyncio.run(scenario())
    assert meter.availability().available is False
    assert meter.availability().reason == reason
    return reason


# DCGM exporter

def test_dcgm_deltas_are_the_recorded_counter_deltas_in_joules() -> None:
    with exporter(samples.DCGM_SCRAPES) as (url, fake):
        meter = DCGMMeter(url)
        assert meter.name == f"dcgm:{url}"
        assert meter.availability().reason == "not read yet"
        readings = read_all(meter, 3)
    assert fake.gets == 3
    # mJ -> J: the first scrape's four counters, summed.
    assert readings[0].energy_j == pytest.approx(
        (48211734125 + 47902215870 + 21377650412 + 9803411256) / 1000)
    assert deltas_j(readings) == pytest.approx([6000 + 5250 + 1800 + 1050,
                                                6600 + 5400 + 900 + 1050])
    assert readings[1].at_s > readings[0].at_s
    assert meter.availability().available
    assert "4 GPU(s)" in meter.availability().reason


def test_dcgm_selects_one_gpu_by_uuid() -> None:
    with exporter(samples.DCGM_SCRAPES) as (url, _):
        readings = read_all(DCGMMeter(url, {"UUID": GPU0}), 3)
    assert readings[0].energy_j == pytest.approx(48211734.125)
    assert deltas_j(readings) == pytest.approx([6000, 6600])


def test_dcgm_selects_a_pods_gpus_and_reports_them_per_device() -> None:
    with exporter(samples.DCGM_SCRAPES) as (url, _):
        meter = DCGMMeter(url, {"pod": samples.LLAMA_POD, "namespace": samples.NAMESPACE})

        async def scenario() -> tuple[dict[str, float], dict[str, float], EnergySample]:
            first = await meter.read_devices()
            second = await meter.read_devices()
            third = await meter.read()
            await meter.aclose()
            return first, second, third

        first, second, third = asyncio.run(scenario())
    assert set(first) == {GPU0, GPU1}
    assert second[GPU0] - first[GPU0] == pytest.approx(6000)
    assert second[GPU1] - first[GPU1] == pytest.approx(5250)
    assert third.energy_j - sum(second.values()) == pytest.approx(6600 + 5400)


def test_dcgm_counts_a_time_sliced_gpu_once() -> None:
    with exporter([samples.DCGM_TIME_SLICED]) as (url, _):
        reading, = read_all(DCGMMeter(url), 1)
    assert reading.energy_j == pytest.approx((21377650412 + 9803411256) / 1000)


def test_dcgm_counter_reset_shows_as_a_smaller_reading() -> None:
    with exporter([samples.DCGM_SCRAPES[0], samples.DCGM_AFTER_RESET]) as (url, _):
        before, after = read_all(DCGMMeter(url, {"UUID": GPU2}), 2)
    assert after.energy_j == pytest.approx(610.0)  # not clamped: the caller sees the reset
    assert (after - before).energy_j < 0


def test_dcgm_without_the_energy_field_is_unavailable_with_the_reason() -> None:
    with exporter([samples.DCGM_WITHOUT_ENERGY]) as (url, _):
        reason = unavailable_reason(DCGMMeter(url))
    assert "no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in reason
    assert "counters CSV" in reason


def test_dcgm_selector_matching_nothing_is_unavailable() -> None:
    with exporter(samples.DCGM_SCRAPES) as (url, _):
        reason = unavailable_reason(DCGMMeter(url, {"pod": "no-such-pod"}))
    assert 'no DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION series match {pod="no-such-pod"}' in reason


def test_http_500_is_unavailable_and_availability_follows_recovery() -> None:
    with exporter([500, samples.DCGM_SCRAPES[0]]) as (url, _):
        meter = DCGMMeter(url)

        async def scenario() -> str:
            with pytest.raises(MeterUnavailable) as raised:
                await meter.read()
            assert meter.availability().available is False
            await meter.read()
            await meter.aclose()
            return str(raised.value)

        reason = asyncio.run(scenario())
    assert "HTTP 500" in reason and url in reason
    assert meter.availability().available


def test_text_that_is_not_an_exposition_is_unavailable() -> None:
    with exporter(["<html><body>502 Bad Gateway</body></html>\n"]) as (url, _):
        reason = unavailable_reason(DCGMMeter(url))
    assert "not Prometheus text exposition" in reason


def test_an_unreachable_exporter_is_unavailable() -> None:
    with exporter(samples.DCGM_SCRAPES) as (url, _):
        pass  # the server is gone once the block ends
    reason = unavailable_reason(DCGMMeter(url, timeout_s=0.5))
    assert url in reason and "ConnectError" in reason


def test_a_meter_reads_through_a_given_transport() -> None:
    fake = PrometheusExpositionFake(samples.DCGM_SCRAPES)
    meter = DCGMMeter("http://dcgm-exporter:9400/metrics", {"UUID": GPU3},
                      transport=httpx.ASGITransport(app=fake))
    assert deltas_j(read_all(meter, 3)) == pytest.approx([1050, 1050])


# Kepler

def test_kepler_07_sums_dynamic_and_idle_of_the_selected_container() -> None:
    selector = {"pod_name": samples.LLAMA_POD, "container_namespace": samples.NAMESPACE,
                "container_name": "vllm"}
    with exporter(samples.KEPLER_V07_SCRAPES) as (url, _):
        meter = KeplerMeter(url, selector)
        assert meter.name == f"kepler:{url}"
        readings = read_all(meter, 3)
    # The per-component families (package, dram, gpu) are parts of the total: not added again.
    assert readings[0].energy_j == pytest.approx(1613794.75 + 425470.5)
    assert deltas_j(readings) == pytest.approx([6280 + 1120, 6950 + 1120])
    assert "kepler_container_joules_total" in meter.availability().reason


def test_kepler_07_modes_keep_only_the_dynamic_share() -> None:
    selector = {"pod_name": samples.LLAMA_POD, "container_name": "vllm"}
    with exporter(samples.KEPLER_V07_SCRAPES) as (url, _):
        readings = read_all(KeplerMeter(url, selector, modes=("dynamic",)), 3)
    assert deltas_j(readings) == pytest.approx([6280, 6950])


def test_kepler_07_selects_a_whole_pod() -> None:
    with exporter(samples.KEPLER_V07_SCRAPES) as (url, _):
        readings = read_all(KeplerMeter(url, {"pod_name": samples.LLAMA_POD}), 2)
    istio_j = (1846.0 + 512.75) - (1843.5 + 512.25)  # the pod's sidecar counts too
    assert deltas_j(readings) == pytest.approx([6280 + 1120 + istio_j])


def test_kepler_011_sums_package_dram_and_gpu_but_not_core() -> None:
    with exporter(samples.KEPLER_V011_SCRAPES) as (url, _):
        meter = KeplerMeter(url, {"pod_id": samples.VLLM_POD_ID, "container_name": "vllm"})
        readings = read_all(meter, 3)
    assert readings[0].energy_j == pytest.approx(5210.5 + 640.75 + 184220.0 + 179880.5)
    assert deltas_j(readings) == pytest.approx([11382.75, 12143])
    reason = meter.availability().reason
    assert "kepler_container_cpu_joules_total" in reason
    assert "kepler_container_gpu_joules_total" in reason


def test_kepler_011_zones_are_a_choice() -> None:
    with exporter(samples.KEPLER_V011_SCRAPES) as (url, _):
        meter = KeplerMeter(url, {"container_name": "node-exporter"}, zones=("core",))
        readings = read_all(meter, 3)
    assert deltas_j(readings) == pytest.approx([0.5, 0.5])


def test_kepler_scrape_without_kepler_metrics_is_unavailable() -> None:
    with exporter(samples.DCGM_SCRAPES) as (url, _):
        reason = unavailable_reason(KeplerMeter(url))
    assert "kepler_container_joules_total" in reason
    assert "is this Kepler's /metrics?" in reason


def test_kepler_selector_matching_nothing_is_unavailable() -> None:
    with exporter(samples.KEPLER_V07_SCRAPES) as (url, _):
        reason = unavailable_reason(KeplerMeter(url, {"pod_name": "gone-pod"}))
    assert 'series match {pod_name="gone-pod"}' in reason


# Factory

def _pool(accounting: dict[str, object]) -> PoolConfig:
    return PoolConfig.model_validate({"name": "gpu", "base_urls": ["http://10.0.0.7:8000/v1"],
                                      "models": ["llama"], "accounting": accounting})


def test_factory_builds_exporter_meters_with_their_label_selector() -> None:
    with exporter(samples.DCGM_SCRAPES) as (url, _):
        meter = build_meter(_pool({"meter": "dcgm", "meter_url": url,
                                   "meter_labels": {"UUID": GPU1}}))
        assert isinstance(meter, DCGMMeter)
        assert deltas_j(read_all(meter, 2)) == pytest.approx([5250])
    kepler = build_meter(_pool({"meter": "kepler", "meter_url": "http://node:9102/metrics"}))
    assert isinstance(kepler, KeplerMeter)
    assert kepler.name == "kepler:http://node:9102/metrics"
    asyncio.run(kepler.aclose())


@pytest.mark.parametrize("kind", ["dcgm", "kepler"])
def test_factory_without_meter_url_falls_back_to_estimates(kind: str) -> None:
    meter = build_meter(_pool({"meter": kind}))
    assert isinstance(meter, NullMeter)
    assert meter.availability().reason.startswith(f"accounting.meter = {kind} needs meter_url")


def test_meter_labels_default_to_every_series() -> None:
    assert _pool({"meter": "dcgm"}).accounting.meter_labels == {}
