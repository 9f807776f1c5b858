"""bench/slow_spells.py tells a proxy whose code ran slower from one whose requests waited.

Synthetic runs: 40 windows of 200 ms at 4,000 req/s, some at half the throughput, each
request's latency 32 over its window's throughput (a saturated proxy at c=32).
"""

from __future__ import annotations

from datetime import UTC, datetime

from bench.loadgen import Sample
from bench.slow_spells import Span, machine_speed, span_of

START = 1_000.0
PERF = 50.0  # the load generator's perf_counter when the run started


def run(slow_own_ms: float, slow_windows: tuple[int, ...] = (10, 11, 12, 30),
        mode: str = "plain", target: str = "sprout") -> tuple[list[dict[str, object]], Span]:
    rows: list[dict[str, object]] = []
    samples: list[Sample] = []
    for window in range(40):
        slow = window in slow_windows
        count = 400 if slow else 800
        for i in range(count):
            at = window * 0.2 + i * 0.2 / count
            rows.append({"created_at": datetime.fromtimestamp(START + at, UTC),
                         "overhead_ms": slow_own_ms if slow else 0.07})
            latency_s = 32 / (count / 0.2)
            samples.append(Sample(latency_s, latency_s, 200, PERF + at))
    return rows, Span(target, "chat", mode, START, START + 8.0, samples, START - PERF)


def test_own_time_that_doubles_as_throughput_halves_is_the_machine() -> None:
    rows, span = run(0.14)
    together, slow = machine_speed("sprout", rows, [span], 32)
    assert "across 39 windows" in together and "logarithms -1.00" in together
    assert "p99 / p50 2.00 as measured" in together
    assert "1.00 with each latency scaled by its window's speed" in together
    assert "4 of 39 windows" in slow and "2,000 against 4,000 req/s" in slow
    assert "(2.00x, throughput /2.00)" in slow and slow.endswith("(the machine)")


def test_own_time_that_stays_put_is_a_pause() -> None:
    rows, span = run(0.07)
    together, slow = machine_speed("sprout", rows, [span], 32)
    assert "logarithms +0.00" in together
    assert "2.00 as measured in those windows, 2.00 with each latency scaled" in together
    assert slow.endswith("(a pause: the proxy's loop, or the host taking its CPU)")


def test_the_first_window_while_clients_connect_is_left_out() -> None:
    rows, span = run(0.14, (0, 20))
    assert "1 of 39 windows" in machine_speed("sprout", rows, [span], 32)[1]


def test_streams_and_other_targets_are_left_out() -> None:
    rows, stream = run(0.14, mode="stream")
    _, other = run(0.14, target="sprout@abc")
    assert machine_speed("sprout", rows, [stream, other], 32) == []


def test_a_steady_run_says_so() -> None:
    rows, span = run(0.07, ())
    assert machine_speed("sprout", rows, [span], 32)[1] == (
        "sprout chat plain c=32: no window under 2/3 of the median throughput (4,000 req/s)")


def test_a_span_runs_from_the_first_measured_send_to_the_last() -> None:
    """Warm-up before the load and its tail after the deadline are not slow windows."""
    rows, span = run(0.07, ())
    lead = [{"created_at": datetime.fromtimestamp(START - 0.09 + i * 0.001, UTC),
             "overhead_ms": 0.07} for i in range(32)]
    tail = [{"created_at": datetime.fromtimestamp(START + 8.0 + i * 0.008, UTC),
             "overhead_ms": 0.07} for i in range(32)]
    measured = span_of("sprout", "chat", "plain", span.samples, START - PERF)
    assert measured.start == START and abs(measured.end - (START + 8.0)) < 0.001
    around = Span("sprout", "chat", "plain", START - 0.09, START + 8.25, span.samples,
                  START - PERF)  # the time around the whole call: what went wrong before
    assert "no window under 2/3" in machine_speed("sprout", lead + rows + tail, [measured], 32)[1]
    assert "1 of 40 windows" in machine_speed("sprout", lead + rows + tail, [around], 32)[1]


def test_windows_whose_own_time_reads_zero_are_left_out() -> None:
    rows, span = run(0.14)
    for row in rows[800:1600]:  # window 1 (0 is left out anyway), read as 0: the ledger clamps
        row["overhead_ms"] = 0.0
    together, slow = machine_speed("sprout", rows, [span], 32)
    assert "across 38 windows" in together and "4 of 38 windows" in slow
