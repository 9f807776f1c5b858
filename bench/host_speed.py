"""How steady this machine's own speed is, with nothing else of ours running.

    .venv/bin/python bench/host_speed.py [--seconds 40] [--cpu N]

On one CPU (default: the last, where `bench/overhead.py` puts the proxies), repeats two fixed
pieces of work and prints, per half second, the median time of each:
- memory-bound: 200,000 random reads from a 256 MiB array (cache misses, like a large Python
  heap's pointer chasing);
- cache-resident: arithmetic over 1.6 MB (3.2 MB with its temporary), which stays in the
  shared L3 cache rather than main memory.

On a dedicated machine both lines stay flat. On a shared virtual machine the memory-bound line
moves when a neighbour loads the host's memory or shared cache, and a proxy whose heap does not
fit its cache slows with it; `bench/overhead.py` reports such slow spells of the proxy (its own
time per request from the ledger, window by window). Run this alone: it measures the machine,
not the proxy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

HALF_S = 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--cpu", type=int, default=sorted(os.sched_getaffinity(0))[-1])
    args = parser.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    big = np.arange(32 * 1024 * 1024, dtype=np.int64)  # 256 MiB
    where = np.random.default_rng(1).integers(0, big.size, 200_000)
    small = np.arange(200_000, dtype=np.int64)  # 1.6 MB
    halves: dict[int, list[tuple[float, float]]] = {}
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < args.seconds:
        big[where].sum()
        middle = time.perf_counter()
        (small * 3).sum()
        (small * 3).sum()
        halves.setdefault(int((now - start) / HALF_S), []).append(
            (middle - now, time.perf_counter() - middle))
    if not halves:
        parser.error("--seconds is too short to time anything")
    memory = [statistics.median(m for m, _ in v) * 1000 for _, v in sorted(halves.items())]
    cached = [statistics.median(c for _, c in v) * 1000 for _, v in sorted(halves.items())]
    print(f"CPU {args.cpu}, {args.seconds:g} s, median ms per half second:")
    for label, values in (("memory-bound", memory), ("cache-resident", cached)):
        print(f"  {label:14s} min {min(values):.3f} median {statistics.median(values):.3f} "
              f"max {max(values):.3f} (max/min {max(values) / min(values):.2f}x)")
        print("   ", " ".join(f"{v:.2f}" for v in values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
