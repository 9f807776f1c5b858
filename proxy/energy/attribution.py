"""Splitting a metered window's joules among the requests in flight (pure).

The rule, per window [start, end) with energy E:

- every request overlapping the window gets the weight
  (w_prefill * prefill_tokens + w_decode * decode_tokens) * overlap / lifetime,
  i.e. its tokens are taken as spread evenly over its lifetime, and the window holds the
  share of them that falls inside it (requests with no tokens count their overlap seconds);
- the window's energy is split in proportion to the weights, so the shares sum to E exactly;
- a window with no request in flight goes to the idle bucket.

The same fractions split the window's *duration*, which amortises embodied carbon by each
request's share of the device's busy time. A request alone on the device through all of its
windows is `measured`; otherwise its energy is `apportioned`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

# Decode tokens cost more than prefill tokens: prefill is batched over the prompt in one
# forward pass. Default ratio from Wilkins et al. 2024 (../shared/data/wilkins), where an output
# token cost 3-8x an input token on A100, V100 and M1 Pro hosts; configurable per pool.
DEFAULT_PREFILL_WEIGHT = 1.0
DEFAULT_DECODE_WEIGHT = 4.0


@dataclasses.dataclass(frozen=True, slots=True)
class Flight:
    """One request's time on the device (monotonic seconds) and its tokens."""

    request_id: str
    start_s: float
    end_s: float
    prefill_tokens: int
    decode_tokens: int


@dataclasses.dataclass(frozen=True, slots=True)
class Window:
    """Energy metered between two samples."""

    start_s: float
    end_s: float
    energy_j: float


@dataclasses.dataclass
class Attribution:
    """Joules and busy seconds per request, the idle remainder, and who was ever alone."""

    energy_j: dict[str, float]
    busy_s: dict[str, float]
    idle_j: float
    idle_s: float
    shared: set[str]

    def method(self, request_id: str) -> str:
        """`measured` if the request never shared a window, else `apportioned`."""
        return "apportioned" if request_id in self.shared else "measured"


def attribute(
    windows: Sequence[Window],
    flights: Sequence[Flight],
    *,
    prefill_weight: float = DEFAULT_PREFILL_WEIGHT,
    decode_weight: float = DEFAULT_DECODE_WEIGHT,
) -> Attribution:
    """Split every window among the flights overlapping it.

    A sweep in time order: each window looks only at the flights alive in it, so thousands of
    windows and rows settle in time proportional to their overlaps, not their product.
    """
    result = Attribution({f.request_id: 0.0 for f in flights},
                         {f.request_id: 0.0 for f in flights}, 0.0, 0.0, set())
    pending = sorted(flights, key=lambda f: f.start_s)
    alive: list[Flight] = []
    next_index = 0
    for window in sorted(windows, key=lambda w: w.start_s):
        while next_index < len(pending) and pending[next_index].start_s < window.end_s:
            alive.append(pending[next_index])
            next_index += 1
        alive = [f for f in alive if f.end_s > window.start_s]
        weights: dict[str, float] = {}
        for flight in alive:
            overlap = min(window.end_s, flight.end_s) - max(window.start_s, flight.start_s)
            if overlap <= 0:
                continue
            lifetime = max(flight.end_s - flight.start_s, 1e-9)
            tokens = prefill_weight * flight.prefill_tokens + decode_weight * flight.decode_tokens
            weights[flight.request_id] = (tokens if tokens > 0 else 1.0) * overlap / lifetime
        total = sum(weights.values())
        duration = window.end_s - window.start_s
        if total <= 0:
            result.idle_j += window.energy_j
            result.idle_s += duration
            continue
        if len(weights) > 1:
            result.shared.update(weights)
        for request_id, weight in weights.items():
            fraction = weight / total
            result.energy_j[request_id] += window.energy_j * fraction
            result.busy_s[request_id] += duration * fraction
    return result


def synthesise(flights: Sequence[Flight], start_s: float, end_s: float, *, active_w: float,
               idle_w: float, step_s: float = 0.5) -> list[Window]:
    """Windows for a device without a meter: active watts while any flight runs, idle otherwise.

    Windows lie on a grid of `step_s` (the sampler's tick), like a metered device's, and each
    holds active watts times the busy part of it (the union of the flights in it) plus idle
    watts times the rest. The split that follows then treats both kinds of device alike, in
    time proportional to the rows rather than to their overlaps.
    """
    union: list[list[float]] = []
    for left, right in sorted((max(f.start_s, start_s), min(f.end_s, end_s)) for f in flights):
        if right <= left:
            continue
        if union and left <= union[-1][1]:
            union[-1][1] = max(union[-1][1], right)
        else:
            union.append([left, right])
    windows: list[Window] = []
    count = max(1, math.ceil((end_s - start_s) / step_s - 1e-9))
    index = 0
    for number in range(count):
        left = start_s + number * step_s
        right = end_s if number == count - 1 else min(end_s, start_s + (number + 1) * step_s)
        busy = 0.0
        while index < len(union) and union[index][1] <= left:
            index += 1
        probe = index
        while probe < len(union) and union[probe][0] < right:
            busy += min(right, union[probe][1]) - max(left, union[probe][0])
            probe += 1
        windows.append(Window(left, right, active_w * busy + idle_w * (right - left - busy)))
    return windows
