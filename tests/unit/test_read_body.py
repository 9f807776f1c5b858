"""read_body's shortcut for a body that has already arrived (#16), and what it falls back to."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from proxy.api.body import read_body
from proxy.errors import BodyTimedOut, InvalidRequest, PayloadTooLarge
from proxy.server.protocol import CYCLE, body_in


def scripted(*messages: dict[str, object], pause_s: float = 0.0):  # type: ignore[no-untyped-def]
    """A `receive` that hands out `messages` in turn, each after `pause_s`."""
    queue = list(messages)

    async def receive() -> dict[str, object]:
        if pause_s:
            await asyncio.sleep(pause_s)
        return queue.pop(0)

    return receive


def test_body_in_reads_this_requests_cycle() -> None:
    assert body_in({"extensions": {CYCLE: SimpleNamespace(more_body=False)}})
    assert not body_in({"extensions": {CYCLE: SimpleNamespace(more_body=True)}})
    assert not body_in({})  # another ASGI server: the clock always runs
    assert not body_in({"extensions": {CYCLE: None}})


def test_an_arrived_body_is_taken_at_once() -> None:
    body = asyncio.run(read_body(scripted({"type": "http.request", "body": b"{}"}), "2",
                                 100, 5.0, arrived=True))
    assert body == b"{}"


def test_an_arrived_body_over_the_limit_is_refused() -> None:
    with pytest.raises(PayloadTooLarge):
        asyncio.run(read_body(scripted({"type": "http.request", "body": b"x" * 101}), None,
                              100, 5.0, arrived=True))


def test_a_first_message_that_is_not_the_whole_body_goes_on_under_the_clock() -> None:
    parts = ({"type": "http.request", "body": b"ab", "more_body": True},
             {"type": "http.request", "body": b"cd", "more_body": False})
    assert asyncio.run(read_body(scripted(*parts), None, 100, 5.0, arrived=True)) == b"abcd"
    with pytest.raises(BodyTimedOut):  # the rest late: the clock still runs
        asyncio.run(read_body(scripted(*parts, pause_s=0.2), None, 100, 0.1, arrived=False))
    with pytest.raises(InvalidRequest):
        asyncio.run(read_body(scripted({"type": "http.disconnect"}), None, 100, 5.0,
                              arrived=True))
