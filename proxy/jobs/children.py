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

# The child's niceness. On a core it shares with the event loop, at nice 0 a child would take
# half the core whenever it runs (the loop watch named settlement in most stalls it logged on
# a loaded machine); at 10 the scheduler gives the loop ~90% of a contended core and the child
# still enough to keep up.
CHILD_NICE = 10


def low_priority_executor() -> concurrent.futures.ProcessPoolExecutor:
    """One spawned worker process at `CHILD_NICE` that exits with this process."""
    return concurrent.futures.ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=watch_parent,
        initargs=(os.getpid(),))


def watch_parent(parent_pid: int) -> None:
    """In the child: exit as soon as the proxy that started it is gone (a kill -9 included).

    A pool's worker otherwise waits on its queue forever once its parent died. The child also
    lowers its own priority (`CHILD_NICE`).
    """
    with contextlib.suppress(OSError):
        os.nice(CHILD_NICE)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
