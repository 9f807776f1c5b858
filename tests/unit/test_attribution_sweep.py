"""The attribution sweep against the naive window x flight loop, and profile synthesis."""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.energy.attribution import Attribution, Flight, Window, attribute, synthesise

TIMES = st.floats(min_value=0.0, max_value=100.0, allow_nan=False, allow_infinity=False)
TOKENS = st.integers(min_value=0, max_value=500)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@st.composite
def _windows(draw: st.DrawFn) -> list[Window]:
    """Arbitrary windows: gaps, overlaps, zero length, any order."""
    windows = []
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        start = draw(TIMES)
        length = draw(st.floats(min_value=0.0, max_value=30.0))
        energy = draw(st.floats(min_value=0.0, max_value=1e4))
        windows.append(Window(start, start + length, energy))
    return windows


@st.composite
def _tiled_windows(draw: st.DrawFn) -> list[Window]:
    """Consecutive windows between sorted sample times, as settlement makes them."""
    points = sorted(set(draw(st.lists(TIMES, min_size=0, max_size=12))))
    return [Window(a, b, draw(st.floats(min_value=0.0, max_value=1e4)))
            for a, b in itertools.pairwise(points)]


@st.composite
def _flights(draw: st.DrawFn) -> list[Flight]:
    flights = []
    for index in range(draw(st.integers(min_value=0, max_value=10))):
        start = draw(TIMES)
        length = draw(st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=40.0)))
        flights.append(Flight(f"r{index}", start, start + length, draw(TOKENS), draw(TOKENS)))
    return flights


def _naive(windows: list[Window], flights: list[Flight], prefill_weight: float,
           decode_weight: float) -> Attribution:
    """Every window against every flight: the rule as the module docstring states it."""
    result = Attribution({f.request_id: 0.0 for f in flights},
                         {f.request_id: 0.0 for f in flights}, 0.0, 0.0, set())
    for window in windows:
        weights = {}
        for flight in flights:
            overlap = min(window.end_s, flight.end_s) - max(window.start_s, flight.start_s)
            if overlap <= 0:
                continue
            lifetime = max(flight.end_s - flight.start_s, 1e-9)
            tokens = prefill_weight * flight.prefill_tokens + decode_weight * flight.decode_tokens
            weights[flight.request_id] = (tokens if tokens > 0 else 1.0) * overlap / lifetime
        total = sum(weights.values())
        if total <= 0:
            result.idle_j += window.energy_j
            result.idle_s += window.end_s - window.start_s
            continue
        if len(weights) > 1:
            result.shared.update(weights)
        for request_id, weight in weights.items():
            fraction = weight / total  # first: energy * weight could underflow
            result.energy_j[request_id] += window.energy_j * fraction
            result.busy_s[request_id] += (window.end_s - window.start_s) * fraction
    return result


def _assert_same(got: Attribution, want: Attribution) -> None:
    assert got.energy_j.keys() == want.energy_j.keys()
    for request_id, joules in want.energy_j.items():
        assert _close(got.energy_j[request_id], joules), request_id
        assert _close(got.busy_s[request_id], want.busy_s[request_id]), request_id
    assert _close(got.idle_j, want.idle_j)
    assert _close(got.idle_s, want.idle_s)
    assert got.shared == want.shared


WEIGHTS = st.floats(min_value=0.0, max_value=10.0)


@settings(max_examples=300, deadline=None)
@given(windows=_windows(), flights=_flights(), prefill_weight=WEIGHTS, decode_weight=WEIGHTS)
def test_sweep_equals_the_naive_double_loop(windows: list[Window], flights: list[Flight],
                                            prefill_weight: float, decode_weight: float) -> None:
    got = attribute(windows, flights, prefill_weight=prefill_weight,
                    decode_weight=decode_weight)
    _assert_same(got, _naive(windows, flights, prefill_weight, decode_weight))


@settings(max_examples=200, deadline=None)
@given(windows=_tiled_windows(), flights=_flights())
def test_sweep_equals_the_naive_loop_on_tiled_windows(windows: list[Window],
                                                      flights: list[Flight]) -> None:
    _assert_same(attribute(windows, flights), _naive(windows, flights, 1.0, 4.0))


@settings(max_examples=200, deadline=None)
@given(windows=_windows(), flights=_flights())
def test_shares_and_idle_sum_to_the_metered_energy(windows: list[Window],
                                                   flights: list[Flight]) -> None:
    result = attribute(windows, flights)
    metered_j = sum(w.energy_j for w in windows)
    assert math.isclose(sum(result.energy_j.values()) + result.idle_j, metered_j,
                        rel_tol=1e-9, abs_tol=1e-6)
    metered_s = sum(w.end_s - w.start_s for w in windows)
    assert math.isclose(sum(result.busy_s.values()) + result.idle_s, metered_s,
                        rel_tol=1e-9, abs_tol=1e-6)
    assert all(joules >= 0 for joules in result.energy_j.values())


@settings(max_examples=200, deadline=None)
@given(windows=_windows(), flights=_flights())
def test_each_window_is_split_in_full(windows: list[Window], flights: list[Flight]) -> None:
    """Window by window: what its flights receive (or idle) is its energy, no more."""
    for window in windows:
        alone = attribute([window], flights)
        assert math.isclose(sum(alone.energy_j.values()) + alone.idle_j, window.energy_j,
                            rel_tol=1e-9, abs_tol=1e-9)


def test_a_flight_alone_is_measured_and_overlapping_ones_apportioned() -> None:
    windows = [Window(0, 1, 10.0), Window(1, 2, 10.0), Window(2, 3, 10.0)]
    flights = [Flight("alone", 0.0, 1.0, 1, 1), Flight("a", 1.5, 3.0, 1, 1),
               Flight("b", 2.0, 3.0, 1, 1)]
    result = attribute(windows, flights)
    assert result.method("alone") == "measured"
    assert result.method("a") == "apportioned" and result.method("b") == "apportioned"
    assert result.energy_j["alone"] == 10.0


def _busy_union(flights: list[Flight], start_s: float, end_s: float) -> float:
    spans = sorted((max(f.start_s, start_s), min(f.end_s, end_s)) for f in flights)
    total, reach = 0.0, start_s
    for left, right in spans:
        if right <= max(left, reach):
            continue
        total += right - max(left, reach)
        reach = right
    return total


@settings(max_examples=300, deadline=None)
@given(flights=_flights(), start_s=TIMES, length=st.floats(min_value=1e-3, max_value=80.0),
       active_w=st.floats(min_value=0.0, max_value=1000.0),
       idle_w=st.floats(min_value=0.0, max_value=100.0))
def test_synthesised_windows_tile_the_span_at_profile_power(
        flights: list[Flight], start_s: float, length: float, active_w: float,
        idle_w: float) -> None:
    end_s = start_s + length
    windows = synthesise(flights, start_s, end_s, active_w=active_w, idle_w=idle_w)
    assert windows[0].start_s == start_s
    assert windows[-1].end_s == end_s
    for left, right in itertools.pairwise(windows):
        assert left.end_s == right.start_s
        assert left.start_s < left.end_s
    busy_s = _busy_union(flights, start_s, end_s)
    want_j = active_w * busy_s + idle_w * (end_s - start_s - busy_s)
    assert math.isclose(sum(w.energy_j for w in windows), want_j, rel_tol=1e-9, abs_tol=1e-6)
    # Windows lie on the sampler's grid, each at active watts for its busy part.
    for window in windows:
        busy = _busy_union(flights, window.start_s, window.end_s)
        width = window.end_s - window.start_s
        assert width <= 0.5 + 1e-9
        assert math.isclose(window.energy_j, active_w * busy + idle_w * (width - busy),
                            rel_tol=1e-9, abs_tol=1e-6)
