"""Background work runs in a child at background priority, so the event loop keeps its core."""

from __future__ import annotations

import os
import sys

import pytest

from proxy.jobs.children import CHILD_NICE, CHILD_POLICY, low_priority_executor


def _priority() -> tuple[int, int]:
    return os.nice(0), os.sched_getscheduler(0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="scheduling policies: Linux")
def test_the_child_is_a_background_batch_job() -> None:
    # At nice 10 and SCHED_OTHER the scheduler let the child run a whole tick (4 ms) each time
    # it picked it, with the loop stopped; SCHED_BATCH at 19 is what it should be instead.
    with low_priority_executor() as executor:
        nice, policy = executor.submit(_priority).result(timeout=60)
    assert (nice, policy) == (CHILD_NICE, CHILD_POLICY) == (19, os.SCHED_BATCH)
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the parent keeps its own
