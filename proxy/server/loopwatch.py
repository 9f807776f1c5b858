"""LoopWatch: how late the event loop runs, and what the garbage collector takes from it.

Every request of a replica shares one event loop, so anything that holds it (a collection of
many objects, a job's synchronous work, a thread holding the GIL) delays every request in
flight at once: the tail of the latency distribution is made of those moments. This watch
measures them where they happen, whatever the load generator or the network add:

- a timer every `interval_s`: how late it fires is the loop's lag, into
  `sprout_event_loop_lag_ms`;
- `gc.callbacks`: each collection's pause by generation, into `sprout_gc_pause_ms`;
- a lag above `warn_ms` is logged with the collections and the scheduled jobs of its window,
  which is usually enough to name the culprit.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

log = logging.getLogger(__name__)

_MS_BUCKETS = (0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000)


class LoopWatch:
    """Started in the lifespan, stopped at its end; one per process."""

    def __init__(self, registry: CollectorRegistry, *, interval_s: float = 0.05,
                 warn_ms: float = 100.0, running_jobs: Callable[[], list[str]] | None = None,
                 ) -> None:
        self.lag = Histogram("sprout_event_loop_lag_ms",
                             "How late the event loop ran a timer (every request waits as long)",
                             buckets=_MS_BUCKETS, registry=registry)
        self.gc_pause = Histogram("sprout_gc_pause_ms", "Garbage collector pauses",
                                  ("generation",), buckets=_MS_BUCKETS, registry=registry)
        self._gc_children = [self.gc_pause.labels(str(generation)) for generation in range(3)]
        self.max_lag_ms = 0.0
        self.stalls = 0
        self._interval_s = interval_s
        self._warn_ms = warn_ms
        self._running_jobs = running_jobs or (lambda: [])
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._gc_started = 0.0
        self._window: list[tuple[int, float]] = []  # collections since the last tick
        self._main = threading.main_thread()

    def start(self) -> None:
        """Begin watching the running loop."""
        self._loop = asyncio.get_running_loop()
        gc.callbacks.append(self._on_gc)
        self._schedule()

    def stop(self) -> None:
        """Stop the timer and the collector callback."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _schedule(self) -> None:
        assert self._loop is not None
        self._due = self._loop.time() + self._interval_s
        self._timer = self._loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        assert self._loop is not None
        lag_ms = max(0.0, (self._loop.time() - self._due) * 1000.0)
        self.lag.observe(lag_ms)
        self.max_lag_ms = max(self.max_lag_ms, lag_ms)
        window, self._window = self._window, []
        if lag_ms >= self._warn_ms:
            self.stalls += 1
            collections = ", ".join(f"gen{generation} {ms:.0f} ms"
                                    for generation, ms in window) or "none"
            log.warning("event loop stalled %.0f ms (collections in the window: %s; jobs "
                        "running: %s)", lag_ms, collections,
                        ", ".join(self._running_jobs()) or "none")
        self._schedule()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
            return
        pause_ms = (time.perf_counter() - self._gc_started) * 1000.0
        generation = int(info.get("generation", 0))
        self._gc_children[min(generation, 2)].observe(pause_ms)
        if threading.current_thread() is self._main and pause_ms >= 1.0:
            self._window.append((generation, pause_ms))
