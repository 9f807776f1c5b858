"""The Responses API through the proxy's chat translation, in front of the real torch worker.

The worker serves chat completions only; the model is the tiny demo model (random weights,
meaningless text), so these tests check the mechanics: events, usage, stored turns, tool
messages and JSON-schema requests reaching a real chat template and `generate`. Greedy
decoding (temperature 0) makes the streamed and the plain answers comparable.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import RunningProxy
from tests.support.ledger import wait_rows

MODEL = "sprout-demo-tiny"
QUESTION = "What is the capital of France?"
WEATHER_TOOL = {"type": "function", "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}

pytestmark = pytest.mark.worker


@pytest.fixture
def proxy(start_proxy: Callable[..., RunningProxy], worker: str, tmp_path) -> RunningProxy:
    # The quick-start pool over the worker: chat, completions and embeddings only.
    return start_proxy([], f"sqlite:///{tmp_path}/ledger.db", upstream_url=worker)


def test_create_stream_and_helper_agree(proxy: RunningProxy) -> None:
    client = proxy.client()
    plain = client.responses.create(model=MODEL, input=QUESTION, max_output_tokens=6,
                                    temperature=0)
    assert plain.status == "incomplete" and plain.usage is not None
    assert plain.incomplete_details is not None
    assert plain.incomplete_details.reason == "max_output_tokens"
    assert plain.usage.output_tokens == 6

    events = list(client.responses.create(model=MODEL, input=QUESTION, max_output_tokens=6,
                                          temperature=0, stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.incomplete"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == plain.output_text  # greedy: same text both ways
    assert events[-1].response.usage.output_tokens == 6  # type: ignore[union-attr]

    # A stop string cut from the greedy answer ends it early: a completed response, which
    # the SDK's stream helper accumulates.
    stop = plain.output_text[-2:]  # (the demo model's text may be whitespace: no rstrip)
    with client.responses.stream(model=MODEL, input=QUESTION, max_output_tokens=6,
                                 temperature=0, extra_body={"stop": [stop]}) as stream:
        helper_deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.status == "completed" and final.output_text == "".join(helper_deltas)
    # As OpenAI's API: the answer ends before the stop sequence.
    assert final.output_text == plain.output_text[:plain.output_text.index(stop)]

    rows = wait_rows(proxy.database_url, 3)
    assert [r["endpoint"] for r in rows] == ["responses"] * 3
    assert all(r["status"] == "ok" and r["usage_source"] == "upstream" for r in rows), rows
    assert rows[0]["prompt_tokens"] == plain.usage.input_tokens
    assert rows[0]["completion_tokens"] == 6 and rows[0]["finish_reason"] == "length"
    assert rows[1]["ttft_ms"] is not None and rows[1]["stream"] is True
    assert rows[2]["finish_reason"] == "stop"


def test_retrieve_and_multi_turn(proxy: RunningProxy) -> None:
    client = proxy.client()
    first = client.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=4,
                                    temperature=0)
    assert client.responses.retrieve(first.id).output_text == first.output_text
    second = client.responses.create(model=MODEL, input="What is my name?",
                                     previous_response_id=first.id, max_output_tokens=4,
                                     temperature=0)
    assert first.usage is not None and second.usage is not None
    # The worker saw the first turn and its answer again: more prompt tokens than both.
    assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
    assert second.previous_response_id == first.id


def test_function_call_output_reaches_the_chat_template(proxy: RunningProxy) -> None:
    client = proxy.client()
    # The demo model cannot decide to call a tool, so the call is the client's own history.
    reply = client.responses.create(model=MODEL, tools=[WEATHER_TOOL],  # type: ignore[list-item]
                                    max_output_tokens=4, temperature=0, input=[
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call_output", "call_id": "call_1", "output": "22 C and sunny"}])
    without = client.responses.create(model=MODEL, max_output_tokens=4, temperature=0,
                                      input="Weather in Paris?")
    assert reply.usage is not None and without.usage is not None
    assert reply.usage.input_tokens > without.usage.input_tokens  # the tool message counted
    rows = wait_rows(proxy.database_url, 2)
    assert rows[0]["directive_level"] == "exempt" and rows[0]["status"] == "ok"


def test_json_schema_request_is_answered(proxy: RunningProxy) -> None:
    client = proxy.client()
    schema = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"], "additionalProperties": False}
    reply = client.responses.create(model=MODEL, input="Largest French city?",
                                    max_output_tokens=4, temperature=0, text={"format": {
                                        "type": "json_schema", "name": "City",
                                        "schema": schema, "strict": True}})
    # Random weights cannot write JSON; the format is echoed and the request is exempt.
    assert reply.text is not None and reply.text.format is not None
    assert reply.text.format.type == "json_schema"
    (row,) = wait_rows(proxy.database_url, 1)
    assert row["directive_level"] == "exempt" and row["status"] == "ok"
