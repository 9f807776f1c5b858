"""A sprout c=N run's slow spells, and the machine's own speed (for bench/overhead.py).

`machine_speed` reads the ledger window by window: whether the proxy's code ran slower when
its throughput fell (the machine) or its requests waited (a pause). `host_speed` times the
machine alone with bench/host_speed.py.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.loadgen import Sample, median_ms, percentile_ms

ROOT = Path(__file__).resolve().parents[1]


WINDOW_S = 0.2  # the windows in which `machine_speed` counts throughput


@dataclasses.dataclass
class Span:
    """One sprout c=N run: when (wall clock, as the ledger's `created_at`) and its samples."""

    target: str
    scenario: str
    mode: str
    start: float
    end: float
    samples: list[Sample]
    wall_minus_perf: float  # add to a sample's `at_s` for wall-clock seconds


def span_of(target: str, scenario: str, mode: str, samples: list[Sample],
            wall_minus_perf: float) -> Span:
    """A run's span from its own samples: from the first measured send to the last.

    Not the time around the whole call: the clients connect and warm up first, and the load
    tails off after the deadline, which would show as slow windows at either end.
    """
    sent = [sample.at_s + wall_minus_perf for sample in samples]
    return Span(target, scenario, mode, min(sent), max(sent), samples, wall_minus_perf)


def machine_speed(name: str, rows: list[dict[str, Any]], spans: list[Span],
                  concurrency: int) -> list[str]:
    """How much of a c=N run's tail was the proxy's code running slower, window by window.

    At c=N a saturated proxy's latency is N over its throughput, so its p99 / p50 is partly
    how far its throughput falls in its slowest moments. The ledger holds each request's own
    time in the proxy (`overhead_ms`: all but the wait on the upstream; mostly code that does
    not yield). Per window of the run: throughput, and the median own time. If they move
    together, the same code ran faster and slower on the proxy's core: the machine (on a
    shared virtual machine, a neighbour's load on the host's memory and caches), not a stall
    in the proxy. The run's p99 / p50 is then also given with each latency scaled by its
    window's speed (the window's median own time against the run's): the spread the proxy
    would show on a machine of steady speed. Slow windows whose own time did not grow are
    pauses: the proxy's loop held (see the loop watch's lags), or the host taking its CPU away
    for a while, which a guest cannot tell apart. Plain requests only: a stream's own time
    includes its waits between chunks.
    """
    lines = []
    for target, scenario, mode in dict.fromkeys((s.target, s.scenario, s.mode) for s in spans
                                                if s.target == name and s.mode == "plain"):
        runs = [s for s in spans if (s.target, s.scenario, s.mode) == (target, scenario, mode)]
        windows: dict[tuple[int, int], list[float]] = {}
        for index, span in enumerate(runs):
            last = int((span.end - span.start) / WINDOW_S) - 1  # the last whole window
            for row in rows:
                at = row["created_at"].timestamp()
                window = int((at - span.start) / WINDOW_S) if at >= span.start else -1
                # Not the first window (the clients connecting) nor a cut-short last one.
                if 1 <= window <= last and row.get("overhead_ms") is not None:
                    windows.setdefault((index, window), []).append(float(row["overhead_ms"]))
        # A median own time of 0 (a clamped reading) has no logarithm: such windows are left out.
        own = {key: median for key, v in windows.items() if (median := statistics.median(v)) > 0}
        windows = {key: v for key, v in windows.items() if key in own}
        if len(windows) < 8:
            continue
        label = f"{target} {scenario} {mode} c={concurrency}"
        rate = {key: len(v) / WINDOW_S for key, v in windows.items()}
        logs = ([math.log(rate[key]) for key in windows], [math.log(own[key]) for key in windows])
        together = (statistics.correlation(*logs)
                    if min(statistics.pvariance(x) for x in logs) > 0 else 0.0)
        typical = statistics.median(v for v in own.values())
        measured: list[float] = []
        scaled: list[float] = []
        for index, span in enumerate(runs):
            for sample in span.samples:
                key = (index, int((sample.at_s + span.wall_minus_perf - span.start) / WINDOW_S))
                if key in own:
                    measured.append(sample.total_s)
                    scaled.append(sample.total_s * typical / own[key])
        spread = (f"; p99 / p50 {percentile_ms(measured, 99) / median_ms(measured):.2f} as "
                  f"measured in those windows, {percentile_ms(scaled, 99) / median_ms(scaled):.2f}"
                  " with each latency scaled by its window's speed" if measured else "")
        lines.append(f"{label}: across {len(windows)} windows of {WINDOW_S * 1000:.0f} ms, "
                     f"throughput against the proxy's own time per request: correlation of "
                     f"their logarithms {together:+.2f} (-1: the same code, run faster or "
                     f"slower){spread}")
        median_rate = statistics.median(rate.values())
        slow = [key for key in windows if rate[key] < median_rate * 2 / 3]
        rest = [key for key in windows if rate[key] >= median_rate * 2 / 3]
        if not slow:
            lines.append(f"{label}: no window under 2/3 of the median throughput "
                         f"({median_rate:,.0f} req/s)")
            continue
        own_slow, own_rest = (statistics.median(x for key in keys for x in windows[key])
                              for keys in (slow, rest))
        rate_slow, rate_rest = (statistics.median(rate[key] for key in keys)
                                for keys in (slow, rest))
        share = sum(len(windows[key]) for key in slow) / sum(len(v) for v in windows.values())
        slowed, speed = own_slow / own_rest, rate_rest / rate_slow
        lines.append(
            f"{label}: {len(slow)} of {len(windows)} windows ran under 2/3 of the median "
            f"throughput ({rate_slow:,.0f} against {rate_rest:,.0f} req/s, {share:.0%} of the "
            f"requests); the proxy's own time per request in them {own_slow:.3f} against "
            f"{own_rest:.3f} ms ({slowed:.2f}x, throughput /{speed:.2f}): "
            + ("its core ran the same code slower (the machine)" if slowed >= 0.75 * speed
               else "its requests waited without running slower (a pause: the proxy's loop, "
                    "or the host taking its CPU)"))
    return lines


def host_speed(seconds: float, cpu: int, when: str) -> list[str]:
    """bench/host_speed.py's summary lines, with nothing of this bench running."""
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "host_speed.py"), "--seconds",
                           f"{seconds:g}", "--cpu", str(cpu)], capture_output=True, text=True)
    lines = [f"{when}: {line.strip()}" for line in done.stdout.splitlines()
             if line.strip().startswith(("memory-bound", "cache-resident"))]
    if done.returncode or not lines:
        why = (done.stderr.strip().splitlines() or ["no output"])[-1]
        lines = [f"{when}: not measured (bench/host_speed.py exited {done.returncode}: {why})"]
    print("\n".join(lines), flush=True)
    return lines
