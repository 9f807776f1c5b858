"""Stored responses on real PostgreSQL: group commit, upsert, key scope, retention and clean-up."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from proxy.accounting.db import make_engine
from proxy.accounting.migrate import upgrade_to_head
from proxy.accounting.responses_store import ResponseStore, StoredResponse
from proxy.jobs.leader import LeaderLock
from proxy.jobs.responses_retention import ResponsesRetention


def _response(response_id: str, key: str | None = "master", text: str = "hi") -> StoredResponse:
    body = {"id": response_id, "object": "response",
            "output": [{"type": "message", "role": "assistant",
                        "content": [{"type": "output_text", "text": text}]}]}
    return StoredResponse(response_id, key, "m", "pool", False, [],
                          [{"id": "msg_1", "type": "message", "role": "user",
                            "content": [{"type": "input_text", "text": "q"}]}],
                          json.dumps(body))


def test_concurrent_puts_share_commits_and_the_newest_answer_wins(pg_url: str) -> None:
    upgrade_to_head(pg_url)
    engine = make_engine(pg_url)
    store = ResponseStore(engine, timedelta(days=1))

    async def scenario() -> None:
        await asyncio.gather(*(store.put(_response(f"resp_{i}"), f"req_{i}")
                               for i in range(40)))
        for i in range(40):
            found = await store.get(f"resp_{i}", "master")
            assert found is not None and found.output()[0]["content"][0]["text"] == "hi"
        await asyncio.gather(store.put(_response("resp_0", text="first"), "r"),
                             store.put(_response("resp_0", text="second"), "r"))
        again = await store.get("resp_0", "master")
        assert again is not None and again.output()[0]["content"][0]["text"] == "second"
        conversation = again.conversation()
        assert conversation is not None and [i["type"] for i in conversation] == [
            "message", "message"]  # this turn's input, then its output
        assert await store.get("resp_0", "other-key") is None
        assert await store.delete("resp_0", "other-key") is False
        assert await store.delete("resp_0", "master") is True
        assert await store.get("resp_0", "master") is None

    asyncio.run(scenario())
    engine.dispose()


def test_expired_responses_are_never_served_and_the_leader_deletes_them(pg_url: str) -> None:
    upgrade_to_head(pg_url)
    engine = make_engine(pg_url)
    store = ResponseStore(engine, timedelta(seconds=0.2))
    later = datetime.now(UTC) + timedelta(seconds=5)

    async def scenario() -> None:
        await store.put(_response("resp_old"), "req")
        assert await store.get("resp_old", "master") is not None
        await asyncio.sleep(0.3)
        assert await store.get("resp_old", "master") is None  # past retention: not served
        leader = LeaderLock(engine, cache_s=0)
        assert await ResponsesRetention(store, leader, clock=lambda: later).run_once() == 1
        assert store.delete_expired(later) == 0
        leader.release()

    asyncio.run(scenario())
    engine.dispose()
