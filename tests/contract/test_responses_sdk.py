"""The official openai SDK's Responses API through the proxy, on both kinds of pool.

`native`: a scripted upstream that serves `/v1/responses` itself (as vLLM or OpenAI do), passed
through. `translated`: the scripted chat-only upstream, through the proxy's chat translation.
The same client code must behave the same on both.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator

import httpx
import openai
import pydantic
import pytest

from proxy.fakes.responses_upstream import ScriptedResponsesUpstream
from proxy.fakes.upstream import Behaviour, ScriptedUpstream
from tests.conftest import MASTER_KEY, RunningProxy, fake_pool
from tests.support.ledger import wait_rows
from tests.support.servers import ServerThread

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather in a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"]}}
DONE = Behaviour(finish_reason="stop")


@dataclasses.dataclass
class Setup:
    """One pool kind in front of its scripted upstream, and the proxy."""

    kind: str
    upstream: ScriptedUpstream
    proxy: RunningProxy

    @property
    def client(self) -> openai.OpenAI:
        return self.proxy.client()

    def sent(self) -> dict:
        return self.upstream.stats.bodies[-1]

    def rows(self, count: int) -> list[dict]:
        return wait_rows(self.proxy.database_url, count)


@pytest.fixture(params=["native", "translated"])
def setup(request: pytest.FixtureRequest, start_proxy: Callable[..., RunningProxy],
          pg_url: str) -> Iterator[Setup]:
    native = request.param == "native"
    app = ScriptedResponsesUpstream() if native else ScriptedUpstream()
    server = ServerThread(app).start()
    endpoints = ["responses", "chat"] if native else ["chat", "completions"]
    proxy = start_proxy([fake_pool(_Url(server.url), endpoints=endpoints)], pg_url)
    yield Setup(request.param, app, proxy)
    server.stop()


@dataclasses.dataclass
class _Url:
    url: str


def test_create_answers_with_usage_and_one_ledger_row(setup: Setup) -> None:
    setup.upstream.script(DONE)
    raw = setup.client.responses.with_raw_response.create(
        model="fake-model", input="Hello there", instructions="Be kind.", max_output_tokens=50)
    response = raw.parse()
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "tok0 tok1 tok2 tok3 tok4"
    assert response.id.startswith("resp_")
    assert response.usage is not None and response.usage.output_tokens == 5
    assert response.instructions == "Be kind."
    sent = setup.sent()
    if setup.kind == "native":  # the request itself, model renamed only
        assert sent["input"] == "Hello there" and sent["instructions"] == "Be kind."
        assert sent["max_output_tokens"] == 50
    else:
        assert sent["messages"] == [{"role": "system", "content": "Be kind."},
                                    {"role": "user", "content": "Hello there"}]
        assert sent["max_tokens"] == 50
    (row,) = setup.rows(1)
    assert row["request_id"] == raw.headers["x-request-id"]
    assert row["endpoint"] == "responses" and row["status"] == "ok"
    assert row["stream"] is False and row["usage_source"] == "upstream"
    assert row["prompt_tokens"] == response.usage.input_tokens
    assert row["completion_tokens"] == response.usage.output_tokens
    assert row["finish_reason"] == "stop" and row["pool"] == "fakes"


def test_native_answers_pass_through_byte_for_byte(start_proxy, pg_url: str) -> None:
    app = ScriptedResponsesUpstream()
    server = ServerThread(app).start()
    try:
        proxy = start_proxy([fake_pool(_Url(server.url), endpoints=["responses"])], pg_url)
        through = httpx.post(proxy.url + "/responses", json={"model": "fake-model",
                                                             "input": "hi"},
                             headers={"authorization": f"Bearer {MASTER_KEY}"})
        assert through.status_code == 200
        (answered,) = app.responses.values()
        assert through.content == json.dumps(answered).encode()  # what the fake sent
        assert through.headers["content-type"] == "application/json"
        again = httpx.get(proxy.url + f"/responses/{answered['id']}",
                          headers={"authorization": f"Bearer {MASTER_KEY}"})
        assert again.content == through.content  # retrieval is byte for byte too
    finally:
        server.stop()


def test_length_limit_is_an_incomplete_response(setup: Setup) -> None:
    response = setup.client.responses.create(model="fake-model", input="Hi",
                                             max_output_tokens=16)
    assert response.status == "incomplete"
    assert response.incomplete_details is not None
    assert response.incomplete_details.reason == "max_output_tokens"
    (row,) = setup.rows(1)
    assert row["finish_reason"] == "length"


def test_stream_helper_accumulates_the_final_response(setup: Setup) -> None:
    setup.upstream.script(DONE)
    with setup.client.responses.stream(model="fake-model", input="Stream please") as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "tok0 tok1 tok2 tok3 tok4" == final.output_text
    assert final.status == "completed" and final.usage is not None
    (row,) = setup.rows(1)
    assert row["stream"] is True and row["status"] == "ok"
    assert row["ttft_ms"] is not None and 0 < row["ttft_ms"] <= row["latency_ms"]
    assert row["completion_tokens"] == final.usage.output_tokens
    assert row["usage_source"] == "upstream"


def test_raw_stream_events_are_the_typed_sequence(setup: Setup) -> None:
    setup.upstream.script(DONE)
    events = list(setup.client.responses.create(model="fake-model", input="Hi", stream=True))
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[2:4] == ["response.output_item.added", "response.content_part.added"]
    assert kinds.count("response.output_text.delta") == 5
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    assert [event.sequence_number for event in events] == list(range(len(events)))
    delta = next(e for e in events if e.type == "response.output_text.delta")
    assert delta.output_index == 0 and delta.content_index == 0 and delta.item_id
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.id == events[0].response.id
    assert completed.response.output_text == "tok0 tok1 tok2 tok3 tok4"


def test_retrieve_and_input_items_and_delete(setup: Setup) -> None:
    setup.upstream.script(DONE)
    created = setup.client.responses.create(model="fake-model", input=[
        {"role": "user", "content": "first"},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "two"}]},
    ])
    again = setup.client.responses.retrieve(created.id)
    assert again.model_dump() == created.model_dump()
    items = setup.client.responses.input_items.list(created.id)
    assert [item.content[0].text for item in items.data] == ["two", "first"]  # newest first
    assert all(item.id for item in items.data)
    oldest_first = setup.client.responses.input_items.list(created.id, order="asc", limit=1)
    assert oldest_first.data[0].content[0].text == "first" and oldest_first.has_more
    setup.client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError) as caught:
        setup.client.responses.retrieve(created.id)
    assert caught.value.body["param"] == "response_id"  # type: ignore[index]


def test_multi_turn_through_previous_response_id(setup: Setup) -> None:
    setup.upstream.script(DONE, DONE)
    first = setup.client.responses.create(model="fake-model", input="My name is Ada.",
                                          instructions="Remember names.")
    second = setup.client.responses.create(model="fake-model", input="What is my name?",
                                           previous_response_id=first.id,
                                           instructions="Remember names.")
    assert second.previous_response_id == first.id
    sent = setup.sent()
    if setup.kind == "native":  # the pool that answered holds the conversation itself
        assert sent["previous_response_id"] == first.id and sent["input"] == "What is my name?"
    else:
        assert [(m["role"], m["content"]) for m in sent["messages"]] == [
            ("system", "Remember names."), ("user", "My name is Ada."),
            ("assistant", first.output_text), ("user", "What is my name?")]
    third = setup.client.responses.create(model="fake-model", input="And again?",
                                          previous_response_id=second.id)
    assert third.output_text
    if setup.kind == "translated":  # three user turns, two answers; instructions not carried
        assert len(setup.sent()["messages"]) == 5


def test_unknown_previous_response_is_a_400(setup: Setup) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        setup.client.responses.create(model="fake-model", input="Hi",
                                      previous_response_id="resp_nope")
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_not_stored_responses_cannot_be_retrieved(setup: Setup) -> None:
    response = setup.client.responses.create(model="fake-model", input="Hi", store=False)
    with pytest.raises(openai.NotFoundError):
        setup.client.responses.retrieve(response.id)


def test_function_calling_round_trip(setup: Setup) -> None:
    setup.upstream.script(Behaviour(tool_call={"name": "get_weather",
                                               "arguments": '{"city": "Paris"}'}),
                          Behaviour(content="It is 22 C in Paris.", finish_reason="stop"))
    first = setup.client.responses.create(model="fake-model", input="Weather in Paris?",
                                          tools=[WEATHER_TOOL])  # type: ignore[list-item]
    (call,) = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert first.status == "completed"
    second = setup.client.responses.create(
        model="fake-model", previous_response_id=first.id, tools=[WEATHER_TOOL],  # type: ignore[list-item]
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "22 C"}])
    assert second.output_text == "It is 22 C in Paris."
    sent = setup.sent()
    if setup.kind == "translated":
        assert sent["tools"] == [{"type": "function", "function": {
            k: v for k, v in WEATHER_TOOL.items() if k != "type"}}]
        _user, assistant, tool = sent["messages"]
        assert assistant["tool_calls"][0]["id"] == call.call_id
        assert assistant["tool_calls"][0]["function"]["name"] == "get_weather"
        assert tool == {"role": "tool", "content": "22 C", "tool_call_id": call.call_id}
    else:
        assert sent["previous_response_id"] == first.id
        assert sent["input"] == [{"type": "function_call_output", "call_id": call.call_id,
                                  "output": "22 C"}]
    rows = setup.rows(2)
    assert [row["directive_level"] for row in rows] == ["exempt", "exempt"]  # tools
    assert rows[0]["finish_reason"] == "tool_calls"


def test_streamed_function_call(setup: Setup) -> None:
    setup.upstream.script(Behaviour(tool_call={"name": "get_weather",
                                               "arguments": '{"city": "Lyon, France"}'}))
    with setup.client.responses.stream(model="fake-model", input="Weather?",
                                       tools=[WEATHER_TOOL]) as stream:  # type: ignore[list-item]
        deltas = [e.delta for e in stream if e.type == "response.function_call_arguments.delta"]
        final = stream.get_final_response()
    (call,) = final.output
    assert call.type == "function_call" and call.arguments == '{"city": "Lyon, France"}'
    assert "".join(deltas) == call.arguments


class City(pydantic.BaseModel):
    city: str
    population: int


def test_json_schema_output(setup: Setup) -> None:
    setup.upstream.script(Behaviour(content='{"city": "Paris", "population": 2102650}',
                                    finish_reason="stop"))
    parsed = setup.client.responses.parse(model="fake-model", input="Largest French city?",
                                          text_format=City)
    assert parsed.output_parsed == City(city="Paris", population=2102650)
    sent = setup.sent()
    if setup.kind == "translated":
        response_format = sent["response_format"]
        assert response_format["type"] == "json_schema"
        assert response_format["json_schema"]["name"] == "City"
        assert response_format["json_schema"]["schema"]["required"] == ["city", "population"]
    else:
        assert sent["text"]["format"]["type"] == "json_schema"
    (row,) = setup.rows(1)
    assert row["directive_level"] == "exempt"  # structured output is exempt from auto


def test_directive_goes_after_instructions_and_earlier_turns(setup: Setup) -> None:
    setup.upstream.script(DONE, DONE)
    client = setup.client.with_options(default_headers={"x-sprout-directive": "L1"})
    first = client.responses.create(model="fake-model", input="Explain the grid.",
                                    instructions="You are terse.")
    client.responses.create(model="fake-model", input="More?", instructions="You are terse.",
                            previous_response_id=first.id)
    sent = setup.sent()
    if setup.kind == "translated":
        assert [(m["role"], m["content"]) for m in sent["messages"]] == [
            ("system", "You are terse."), ("user", "Explain the grid."),
            ("assistant", first.output_text), ("system", "Always answer briefly"),
            ("user", "More?")]
    else:
        assert sent["instructions"] == "You are terse."  # byte-identical
        assert sent["input"] == [{"type": "message", "role": "system",
                                  "content": "Always answer briefly"},
                                 {"type": "message", "role": "user", "content": "More?"}]
    rows = setup.rows(2)
    assert [row["directive_level"] for row in rows] == ["L1", "L1"]
    # The stored turn is the client's own input: no directive in what input_items shows.
    items = setup.client.responses.input_items.list(first.id).data
    assert [item.role for item in items] == ["user"]


def test_reasoning_items_pass_through(setup: Setup) -> None:
    setup.upstream.script(DONE, DONE)
    first = setup.client.responses.create(model="fake-model", input="Think.", store=False,
                                          reasoning={"effort": "low"})
    # Stateless multi-turn, as agent frameworks do it: the output goes back as input.
    carried = [item.model_dump(exclude_none=True) for item in first.output]
    setup.client.responses.create(model="fake-model", store=False, input=[
        {"role": "user", "content": "Think."}, *carried, {"role": "user", "content": "More."}])
    sent = setup.sent()
    if setup.kind == "native":
        assert first.output[0].type == "reasoning"
        assert sent["input"][1]["type"] == "reasoning"
        assert sent["input"][1]["encrypted_content"] == "opaque-0"  # untouched
    else:
        assert setup.upstream.stats.bodies[0]["reasoning_effort"] == "low"
        assert [m["role"] for m in sent["messages"]] == ["user", "assistant", "user"]


@pytest.mark.parametrize(("body", "param"), [
    ({"input": [{"type": "telepathy", "content": "x"}]}, "input.0.type"),
    ({"input": [{"role": "user", "content": [{"type": "input_smell"}]}]},
     "input.0.content.0.type"),
    ({"input": [{"role": "oracle", "content": "x"}]}, "input.0.role"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input.0.call_id"),
    ({"input": 42}, "input"),
    ({}, "input"),
    ({"input": "hi", "tools": [{"type": "function"}]}, "tools.0.name"),
    ({"input": "hi", "max_output_tokens": -1}, "max_output_tokens"),
])
def test_bad_input_is_a_400_naming_the_param(setup: Setup, body: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        setup.client.responses.create(model="fake-model", **body)  # type: ignore[call-overload]
    error = caught.value.body
    assert isinstance(error, dict) and error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    (row,) = setup.rows(1)
    assert row["status"] == "rejected" and row["endpoint"] == "responses"
    assert setup.upstream.stats.requests == 0


def test_what_a_chat_pool_cannot_do_is_a_400(proxy: RunningProxy, fake) -> None:
    client = proxy.client()  # the scripted chat-only upstream (a native pool takes these)
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake-model", input="Search the web",
                                tools=[{"type": "web_search"}])
    assert caught.value.body["param"] == "tools.0.type"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake-model", input=[
            {"type": "computer_call_output", "call_id": "c", "output": {}}])
    assert caught.value.body["param"] == "input.0.type"  # type: ignore[index]
    assert fake.app.stats.requests == 0
    assert [row["status"] for row in wait_rows(proxy.database_url, 2)] == ["rejected"] * 2


def test_client_disconnect_cancels_the_upstream(setup: Setup) -> None:
    setup.upstream.script(Behaviour(tokens=40, chunk_delay_s=0.2, finish_reason="stop"))
    with httpx.stream("POST", setup.proxy.url + "/responses",
                      json={"model": "fake-model", "input": "Long answer", "stream": True},
                      headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=10) as reply:
        lines = reply.iter_lines()
        while "response.output_text.delta" not in next(lines):
            pass
    (row,) = setup.rows(1)
    assert row["status"] == "client_disconnect" and row["endpoint"] == "responses"
    deadline_rows = wait_rows(setup.proxy.database_url, 1)
    assert deadline_rows[0]["ttft_ms"] is not None
    _wait(lambda: setup.upstream.stats.cancelled == 1)
    assert setup.upstream.stats.completed == 0


def test_storing_off_makes_previous_response_id_a_clear_400(
        start_proxy: Callable[..., RunningProxy], start_fake, pg_url: str) -> None:
    fake = start_fake()
    proxy = start_proxy([fake_pool(fake)], pg_url, responses_store=False)
    client = proxy.client()
    first = client.responses.create(model="fake-model", input="Hi")
    with pytest.raises(openai.BadRequestError) as caught:
        client.responses.create(model="fake-model", input="Again",
                                previous_response_id=first.id)
    assert caught.value.body["param"] == "previous_response_id"  # type: ignore[index]
    assert caught.value.body["code"] == "responses_store_disabled"  # type: ignore[index]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)


def test_a_stored_response_belongs_to_its_key(setup: Setup) -> None:
    created = httpx.post(setup.proxy.root + "/admin/keys", json={"name": "other"},
                         headers={"authorization": f"Bearer {MASTER_KEY}"})
    assert created.status_code in (200, 201), created.text
    other = setup.proxy.client(api_key=created.json()["key"])
    _wait(lambda: _authenticates(other))
    mine = setup.client.responses.create(model="fake-model", input="secret")
    with pytest.raises(openai.NotFoundError):
        other.responses.retrieve(mine.id)
    with pytest.raises(openai.BadRequestError):
        other.responses.create(model="fake-model", input="x", previous_response_id=mine.id)
    assert setup.upstream.stats.requests == 1  # not even a native pool is asked


def _authenticates(client: openai.OpenAI) -> bool:
    try:
        client.models.list()
    except openai.AuthenticationError:
        return False
    return True


def _wait(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_a_litellm_pool_serves_responses_through_litellm(start_proxy, pg_url: str) -> None:
    from proxy.pools.config import PoolConfig

    app = ScriptedResponsesUpstream()
    server = ServerThread(app).start()
    try:
        pool = PoolConfig(name="via-litellm", kind="litellm", base_urls=[server.url],
                          endpoints=["responses"], api_key="sk-upstream",  # type: ignore[arg-type]
                          models=[{"name": "gpt-local", "upstream_name": "openai/fake-model"}])  # type: ignore[list-item]
        proxy = start_proxy([pool], pg_url)
        client = proxy.client()
        app.script(DONE, DONE)
        reply = client.responses.create(model="gpt-local", input="Hi")
        assert reply.output_text == "tok0 tok1 tok2 tok3 tok4"
        assert app.stats.bodies[-1]["model"] == "fake-model"  # litellm called /v1/responses
        with client.responses.stream(model="gpt-local", input="Hi") as stream:
            final = stream.get_final_response()
        assert final.output_text == "tok0 tok1 tok2 tok3 tok4"
        rows = wait_rows(pg_url, 2)
        assert all(r["backend"] == "litellm" and r["status"] == "ok" for r in rows), rows
        assert all(r["completion_tokens"] == 5 for r in rows)
    finally:
        server.stop()
