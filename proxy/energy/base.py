"""EnergyMeter: cumulative joules from one source; readings subtract to deltas (as in zeus)."""

from __future__ import annotations

import abc
import dataclasses
from datetime import datetime

from proxy.redact import redact_text


@dataclasses.dataclass(frozen=True, slots=True)
class Availability:
    """Whether a meter works here, and why not."""

    available: bool
    reason: str  # shown in /admin/pools and /health: a URL's credentials are hidden

    def __post_init__(self) -> None:
        object.__setattr__(self, "reason", redact_text(self.reason))


@dataclasses.dataclass(frozen=True, slots=True)
class EnergySample:
    """Joules since the meter started, at a monotonic time in seconds.

    `device_id` is set by meters that learn which device they read (a worker names its own;
    behind one Service URL successive reads may reach different workers).
    """

    energy_j: float
    at_s: float
    device_id: str | None = None
    # When the counter was read, on the reading machine's wall clock (a remote worker says).
    read_at: datetime | None = None

    def __sub__(self, earlier: EnergySample) -> EnergyDelta:
        return EnergyDelta(self.energy_j - earlier.energy_j, self.at_s - earlier.at_s)


@dataclasses.dataclass(frozen=True, slots=True)
class EnergyDelta:
    """Energy and time between two samples."""

    energy_j: float
    duration_s: float


class MeterUnavailable(Exception):
    """Reading a meter that is not available (check `availability()` first)."""


class EnergyMeter(abc.ABC):
    """One energy source; `availability` never raises, `read` may raise MeterUnavailable."""

    name: str
    device_id: str | None = None  # the device the source says it reads, when it says so

    @abc.abstractmethod
    def availability(self) -> Availability:
        """Probe the source without raising."""

    @abc.abstractmethod
    async def read(self) -> EnergySample:
        """Cumulative joules now."""

    async def aclose(self) -> None:  # noqa: B027 - most meters hold nothing
        """Release resources."""
