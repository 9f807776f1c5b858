"""bench/overhead.py tells a proxy that ran slower from one whose requests waited.

Synthetic ledgers: 40 windows of 200 ms at 4,000 req/s, four of them at half the throughput.
"""

from __future__ import annotations

from datetime import UTC, datetime

from bench.overhead import machine_speed

START = 1_000.0
SPAN = [("sprout", "chat", "plain", START, START + 8.0)]


def ledger(slow_own_ms: float, slow_windows: tuple[int, ...] = (10, 11, 12, 30)
           ) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for window in range(40):
        slow = window in slow_windows
        count = 400 if slow else 800
        rows += [{"created_at": datetime.fromtimestamp(START + window * 0.2 + i * 0.2 / count,
                                                       UTC),
                  "overhead_ms": slow_own_ms if slow else 0.07} for i in range(count)]
    return rows


def test_own_time_that_doubles_as_throughput_halves_is_the_machine() -> None:
    (line,) = machine_speed("sprout", ledger(0.14), SPAN, 32)
    assert "4 of 39 windows" in line and "2,000 against 4,000 req/s" in line
    assert "(2.00x, throughput /2.00)" in line and line.endswith("(the machine)")


def test_the_first_window_while_clients_connect_is_left_out() -> None:
    (line,) = machine_speed("sprout", ledger(0.14, (0, 20)), SPAN, 32)
    assert "1 of 39 windows" in line


def test_own_time_that_stays_put_is_waiting() -> None:
    (line,) = machine_speed("sprout", ledger(0.07), SPAN, 32)
    assert line.endswith("(a pause: the proxy's loop, or the host taking its CPU)")


def test_streams_and_other_targets_are_left_out() -> None:
    spans = [("sprout", "chat", "stream", START, START + 8.0),
             ("sprout@abc", "chat", "plain", START, START + 8.0)]
    assert machine_speed("sprout", ledger(0.14), spans, 32) == []


def test_a_steady_run_says_so() -> None:
    steady = [{"created_at": datetime.fromtimestamp(START + i / 4000, UTC), "overhead_ms": 0.07}
              for i in range(32_000)]
    (line,) = machine_speed("sprout", steady, SPAN, 32)
    assert line.startswith("sprout chat plain c=32: no window of 200 ms under 2/3")
