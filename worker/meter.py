"""The worker's device meter and its `/metrics/energy` document (read by the proxy's RemoteMeter).

`auto` takes the first available of NVML (NVIDIA GPUs), RAPL (Linux CPU package and DRAM) and
Apple powermetrics; otherwise the meter is null and the proxy falls back to labelled estimates.
`fake:WATTS` simulates a device of constant power (tests and demos; reported as fake), and
`fake-wall:WATTS` one whose counter is the wall clock, so several processes share it.
`nvml:N` meters one GPU. Specs joined with `+` add up (a `SumMeter`): a worker that prefills
on one device and decodes on another, or drafts on an old GPU, meters both; with `auto`, such a
worker meters each of its devices (`meter_spec_for_devices`).
"""

from __future__ import annotations

import socket
from datetime import UTC, datetime

from fastapi import APIRouter, FastAPI

from proxy.energy.apple import AppleMeter
from proxy.energy.base import EnergyMeter, MeterUnavailable
from proxy.energy.composite import SumMeter
from proxy.energy.fakes import ConstantPowerMeter, WallClockPowerMeter
from proxy.energy.null import NullMeter
from proxy.energy.nvml import NVMLMeter
from proxy.energy.rapl import RAPLMeter
from proxy.energy.remote import RemoteEnergy


def meter_spec_for_devices(devices: list[str]) -> str:
    """The meter spec covering torch devices: cuda:N -> nvml:N, cpu -> rapl, mps -> apple."""
    specs = []
    for device in devices:
        kind, _, index = device.partition(":")
        spec = {"cuda": f"nvml:{index or 0}", "cpu": "rapl", "mps": "apple"}.get(kind)
        if spec is not None and spec not in specs:
            specs.append(spec)
    return "+".join(specs) or "auto"


def pick_meter(spec: str = "auto") -> EnergyMeter:
    """A meter from `auto | nvml | nvml:N | rapl | apple | none | fake:WATTS` (`+` sums)."""
    if "+" in spec:
        return SumMeter([pick_meter(part) for part in spec.split("+")])
    if spec.startswith("fake-wall:"):
        return WallClockPowerMeter(float(spec.split(":", 1)[1]))
    if spec.startswith("fake:"):
        return ConstantPowerMeter(float(spec.split(":", 1)[1]))
    if spec.startswith("nvml:"):
        return NVMLMeter(devices=[int(spec.split(":", 1)[1])])
    choices: dict[str, EnergyMeter] = {"nvml": NVMLMeter(), "rapl": RAPLMeter(),
                                       "apple": AppleMeter()}
    if spec == "none":
        return NullMeter("metering disabled (--meter none)")
    if spec in choices:
        return choices[spec]
    reasons = []
    for name, meter in choices.items():
        availability = meter.availability()
        if availability.available:
            return meter
        reasons.append(f"{name}: {availability.reason}")
    return NullMeter("; ".join(reasons))


def device_identity(devices: list[str]) -> str:
    """The worker's device id: host, then each torch device (GPUs by UUID where NVML says)."""
    names = []
    for device in devices:
        kind, _, index = device.partition(":")
        names.append(_gpu_uuid(int(index or 0)) or device if kind == "cuda" else kind)
    return f"{socket.gethostname()}/{'+'.join(names)}"


def _gpu_uuid(index: int) -> str | None:
    try:
        import pynvml  # vendor SDK: lazily, only on machines that have it

        pynvml.nvmlInit()
        value = pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(index))
    except Exception:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def energy_router(meter: EnergyMeter, device_id: str | None = None) -> APIRouter:
    """`GET /metrics/energy`: cumulative joules of this machine's device, and its id."""
    router = APIRouter()

    @router.get("/metrics/energy")
    async def energy() -> RemoteEnergy:
        availability = meter.availability()
        if not availability.available:
            return RemoteEnergy(available=False, meter=meter.name, reason=availability.reason,
                                device=device_id)
        try:
            sample = await meter.read()
        except MeterUnavailable as exc:
            return RemoteEnergy(available=False, meter=meter.name, reason=str(exc),
                                device=device_id)
        read_at = datetime.now(UTC)
        parts = ({name: joules for name, joules in await meter.read_parts()}
                 if isinstance(meter, SumMeter) else {})
        return RemoteEnergy(available=True, meter=meter.name, reason=availability.reason,
                            energy_j=sample.energy_j, parts_j=parts, device=device_id,
                            read_at=read_at)

    return router


def meter_only_app(meter: EnergyMeter, device_id: str | None = None) -> FastAPI:
    """Meter-only mode: beside vLLM or llama.cpp, serve just the device's energy.

    It names a device only if told (`--device-id`): the server beside it does not name its
    device on responses, so by default the proxy files both under the pool's meter device.
    """
    app = FastAPI(title="sprout-worker (meter only)")
    app.include_router(energy_router(meter, device_id))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "mode": "meter-only", "meter": meter.name}

    return app
