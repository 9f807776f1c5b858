"""A long request holds nothing back: other rows are written at once, settled later."""

from __future__ import annotations

import threading
import time

import pytest

from proxy.fakes.upstream import Behaviour
from tests.conftest import Fake, RunningProxy
from tests.support.ledger import rows, wait_rows, wait_settled


@pytest.mark.postgres
def test_rows_are_written_while_a_long_stream_stays_open(proxy: RunningProxy,
                                                         fake: Fake) -> None:
    fake.app.script(Behaviour(tokens=24, chunk_delay_s=0.4))  # a ~10 s stream first
    client = proxy.client(timeout=60)
    opened = threading.Event()

    def long_stream() -> None:
        stream = client.chat.completions.create(
            model="fake-model", messages=[{"role": "user", "content": "a long one"}],
            stream=True)
        for _ in stream:
            opened.set()

    streamer = threading.Thread(target=long_stream)
    streamer.start()
    assert opened.wait(10)
    started = time.monotonic()
    for _ in range(20):
        client.chat.completions.create(model="fake-model",
                                       messages=[{"role": "user", "content": "quick"}])
    found = wait_rows(proxy.database_url, 20, timeout_s=3)
    assert time.monotonic() - started < 6 and streamer.is_alive()  # the stream is still open
    assert len(found) == 20 and {r["energy_method"] for r in found} <= {"provisional",
                                                                        "estimated"}
    streamer.join(30)
    settled = wait_settled(proxy.database_url, 21, timeout_s=20)  # then all of them settle
    assert {r["energy_method"] for r in settled} == {"estimated"}
    assert len(rows(proxy.database_url)) == 21
