"""A paced soak: open-loop traffic at a fixed rate for a while, the proxy's RSS sampled from
/proc as it goes (used by tests/e2e/test_soak.py, two minutes, and bench/soak.py, longer)."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import time
from pathlib import Path

from bench.loadgen import Connection, build_request

BODY = {"model": "fake-model", "max_tokens": 5,
        "messages": [{"role": "user", "content": "Say five words about the grid."}]}


@dataclasses.dataclass
class SoakResult:
    """What a soak saw: requests by status, and (seconds in, RSS MiB) samples."""

    sent: int = 0
    statuses: dict[int, int] = dataclasses.field(default_factory=dict)
    late: int = 0  # requests that could not be sent on time (no free connection)
    latencies_s: list[float] = dataclasses.field(default_factory=list)
    rss: list[tuple[float, float]] = dataclasses.field(default_factory=list)

    def rss_at(self, seconds: float) -> float:
        """The RSS sample nearest to `seconds` into the run (MiB)."""
        return min(self.rss, key=lambda sample: abs(sample[0] - seconds))[1]


def rss_mib(pid: int) -> float:
    """Resident memory of one process, from /proc (MiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for {pid}")


async def soak(url: str, api_key: str, pid: int, *, rate: float, duration_s: float,
               connections: int = 32, rss_every_s: float = 5.0) -> SoakResult:
    """`rate` requests a second for `duration_s`, every fifth one streamed."""
    plain = build_request(url + "/chat/completions", json.dumps(BODY).encode(), api_key)
    streamed = build_request(url + "/chat/completions",
                             json.dumps(BODY | {"stream": True}).encode(), api_key)
    # Used in turn (FIFO), so none idles past the server's keep-alive timeout.
    idle = collections.deque([await Connection.open(url) for _ in range(connections)])
    result = SoakResult()
    started = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()

    async def one(connection: Connection, stream: bool) -> None:
        sample = await connection.request(streamed if stream else plain, stream=stream)
        result.statuses[sample.status] = result.statuses.get(sample.status, 0) + 1
        result.latencies_s.append(sample.total_s)
        idle.append(connection)

    next_rss = 0.0
    index = 0
    while (elapsed := time.perf_counter() - started) < duration_s:
        if elapsed >= next_rss:
            result.rss.append((elapsed, rss_mib(pid)))
            next_rss += rss_every_s
        due = started + index / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if not idle:
            result.late += 1
        else:
            task = asyncio.create_task(one(idle.popleft(), stream=index % 5 == 0))
            pending.add(task)
            task.add_done_callback(pending.discard)
            result.sent += 1
        index += 1
    await asyncio.gather(*pending)
    result.rss.append((time.perf_counter() - started, rss_mib(pid)))
    for connection in idle:
        connection.close()
    return result
