"""A lean HTTP/1.1 keep-alive load generator (raw asyncio streams), so that on a small machine
the client takes as little CPU as possible from the servers being measured."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import statistics
import time
from collections.abc import Iterator
from urllib.parse import urlsplit


@dataclasses.dataclass
class Sample:
    """One request: time to the first content byte of the body, and to the end."""

    ttfb_s: float
    total_s: float
    status: int
    at_s: float = 0.0  # when it was sent (perf_counter)


# What marks the first generated token in a streamed body: chat/completions deltas by default;
# a Responses stream's first output is its `response.output_text.delta` event.
CHAT_TOKEN = (b'"content"', b'"text"')
RESPONSES_TOKEN = (b"response.output_text.delta",)


class Connection:
    """One keep-alive connection; `request` sends prebuilt bytes and reads one response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> Connection:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer)

    async def request(self, raw: bytes, *, stream: bool,
                      token: tuple[bytes, ...] = CHAT_TOKEN) -> Sample:
        started = time.perf_counter()
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        headers = head.lower()
        first_s = 0.0
        if b"transfer-encoding: chunked" in headers:
            while True:
                size_line = await self.reader.readuntil(b"\r\n")
                size = int(size_line.strip().split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if not first_s and (not stream or any(mark in chunk for mark in token)):
                    first_s = time.perf_counter() - started
                if size == 0:
                    break
                del chunk
        else:
            marker = b"content-length: "
            index = headers.index(marker) + len(marker)
            length = int(headers[index:headers.index(b"\r\n", index)])
            await self.reader.readexactly(length)
            first_s = time.perf_counter() - started
        total = time.perf_counter() - started
        return Sample(first_s or total, total, status, started)

    def close(self) -> None:
        self.writer.close()


def build_request(url: str, body: bytes, api_key: str) -> bytes:
    """Raw bytes of a keep-alive JSON POST."""
    parts = urlsplit(url)
    return (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    ).encode() + body


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage collection in this process while it measures.

    The samples pile up (60,000 in 8 s at c=32), so this process's full collections grew to
    90 ms: every request in flight, whatever its target, looked 90 ms slow at once (seen with
    `gc.callbacks`). The garbage left by a run is collected after it.
    """
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
        gc.collect()


async def sequential(url: str, raw: bytes, count: int, *, stream: bool,
                     token: tuple[bytes, ...] = CHAT_TOKEN) -> list[Sample]:
    """`count` requests one after another on one connection (after 20 warm-ups)."""
    connection = await Connection.open(url)
    try:
        for _ in range(20):
            await connection.request(raw, stream=stream, token=token)
        with collector_paused():
            return [await connection.request(raw, stream=stream, token=token)
                    for _ in range(count)]
    finally:
        connection.close()


async def closed_loop(url: str, raw: bytes, concurrency: int, duration_s: float, *,
                      stream: bool, token: tuple[bytes, ...] = CHAT_TOKEN
                      ) -> tuple[float, list[Sample]]:
    """`concurrency` clients each sending back to back for `duration_s`: (req/s, samples)."""
    samples: list[Sample] = []
    deadline = 0.0

    async def client() -> None:
        connection = await Connection.open(url)
        try:
            await connection.request(raw, stream=stream, token=token)  # warm-up
            while time.perf_counter() < deadline:
                samples.append(await connection.request(raw, stream=stream, token=token))
        finally:
            connection.close()

    with collector_paused():
        started = time.perf_counter()
        deadline = started + duration_s
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    bad = [s for s in samples if s.status != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} of {len(samples)} requests failed (status {bad[0].status})")
    return len(samples) / elapsed, samples


def percentile_ms(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) in milliseconds."""
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index] * 1000.0


def median_ms(values: list[float]) -> float:
    """Median in milliseconds."""
    return statistics.median(values) * 1000.0
