"""How a request waiting on its upstream learns that its client left: the connection's hooks
(proxy/server/protocol.py), or, under another ASGI server, `receive()`'s disconnect message."""

from __future__ import annotations

import asyncio

import pytest

from proxy.server.protocol import DisconnectHooks
from proxy.serving.service import _CancelOnDisconnect


async def _never() -> dict[str, object]:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("with_hooks", [True, False])
def test_a_client_leaving_cancels_the_wait_and_says_so(with_hooks: bool) -> None:
    async def scenario() -> bool:
        hooks = DisconnectHooks() if with_hooks else None
        gone = asyncio.Event()

        async def receive() -> dict[str, object]:
            await gone.wait()
            return {"type": "http.disconnect"}

        with _CancelOnDisconnect(receive, hooks) as watch:
            asyncio.get_running_loop().call_later(
                0.05, hooks.fire if hooks is not None else gone.set)
            try:
                await asyncio.sleep(5)  # the upstream that never answers
            except asyncio.CancelledError:
                return watch.client_gone()
        raise AssertionError("the wait was not cancelled")

    assert asyncio.run(scenario()) is True


def test_hooks_after_the_block_or_on_a_dead_connection() -> None:
    async def scenario() -> None:
        hooks = DisconnectHooks()
        with _CancelOnDisconnect(_never, hooks):
            await asyncio.sleep(0)
        hooks.fire()  # the client leaves after the answer: nothing is cancelled
        await asyncio.sleep(0.01)
        # A connection already lost: the callback still runs (soon), so the wait ends.
        called: list[int] = []
        hooks.add(lambda: called.append(1))
        await asyncio.sleep(0)
        assert called == [1]

    asyncio.run(scenario())
