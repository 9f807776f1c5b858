"""Background work in a child process of the proxy: off the GIL, at low priority, never orphaned.

Settlement and the predictor's fit are CPU-bound bookkeeping that may lag; requests may not.
Run in the proxy's own interpreter they would hold the GIL for up to seconds at a time, and
every request on that replica would wait behind them. `low_priority_executor` gives each a
spawned process instead.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import threading
import time

# The child's niceness and policy. At nice 10 the scheduler gave a child that had work ~10% of
# a contended core, but each time it picked the child it let it run to the next tick: the
# event loop stood still 4 ms at a time, ~35 times a second on a saturated core (the proxy's
# main thread waited 307 ms of every 4 s for its CPU, from /proc/PID/schedstat), and every
# request in flight took the 4 ms. SCHED_BATCH at nice 19 is a background batch job: the
# child never preempts the loop when it wakes, and under contention it gets ~1.5% of the core,
# still all the idle time, never none (SCHED_IDLE could starve settlement on a busy host).
CHILD_NICE = 19
CHILD_POLICY: int | None = getattr(os, "SCHED_BATCH", None)  # Linux only


def low_priority_executor() -> concurrent.futures.ProcessPoolExecutor:
    """One spawned worker at `CHILD_NICE` and `CHILD_POLICY` that exits with this process."""
    return concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=watch_parent,
        initargs=(os.getpid(),))


def watch_parent(parent_pid: int) -> None:
    """In the child: exit as soon as the proxy that started it is gone (a kill -9 included).

    A pool's worker otherwise waits on its queue forever once its parent died. The child also
    lowers its own priority (`CHILD_NICE`, `CHILD_POLICY`).
    """
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICE - os.nice(0))
    if CHILD_POLICY is not None:  # elsewhere (macOS) the niceness alone
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, CHILD_POLICY, os.sched_param(0))

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
