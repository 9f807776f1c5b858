"""The Responses ↔ chat translation (pure): requests, answers and the streamed event sequence."""

from __future__ import annotations

import itertools
import json

import pytest

from proxy.errors import InvalidRequest
from proxy.protocol.responses import InputItem, ResponsesRequest
from proxy.protocol.responses_chat import (
    ChatBody,
    ChatStreamTranslator,
    ResponseFrame,
    check_translatable,
    response_from_chat,
    to_chat,
)

_counter = itertools.count()


def new_id(prefix: str) -> str:
    return f"{prefix}_{next(_counter)}"


def request(**fields: object) -> ResponsesRequest:
    return ResponsesRequest.model_validate({"model": "m", "input": "hi"} | fields)


def frame(req: ResponsesRequest) -> ResponseFrame:
    return ResponseFrame("resp_1", 1_700_000_000, "m", req, None)


def test_request_fields_map_to_chat() -> None:
    req = request(
        instructions="Be terse.", max_output_tokens=32, temperature=0.5, top_p=0.9,
        parallel_tool_calls=False, tool_choice={"type": "function", "name": "f"},
        tools=[{"type": "function", "name": "f", "parameters": {"type": "object"},
                "strict": True}],
        text={"format": {"type": "json_schema", "name": "Out", "schema": {"type": "object"},
                         "strict": True}},
        reasoning={"effort": "high"}, top_k=5, include=["reasoning.encrypted_content"],
        store=True, truncation="auto")
    chat = json.loads(to_chat(req, [], "upstream-m").to_json_bytes())
    assert chat["model"] == "upstream-m"
    assert chat["messages"] == [{"role": "system", "content": "Be terse."},
                                {"role": "user", "content": "hi"}]
    assert chat["max_tokens"] == 32 and chat["temperature"] == 0.5 and chat["top_p"] == 0.9
    assert chat["parallel_tool_calls"] is False
    assert chat["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert chat["tools"] == [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "object"}, "strict": True}}]
    assert chat["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "Out", "schema": {"type": "object"}, "strict": True}}
    assert chat["reasoning_effort"] == "high"
    assert chat["top_k"] == 5  # a vendor extension passes through
    for consumed in ("include", "store", "truncation", "reasoning", "text", "input"):
        assert consumed not in chat
    assert "stream" not in chat


def test_history_items_become_chat_messages() -> None:
    history = [InputItem.model_validate(item) for item in [
        {"role": "user", "content": [{"type": "input_text", "text": "a"},
                                     {"type": "input_text", "text": "b"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{\"x\":1}"},
        {"type": "function_call_output", "call_id": "c1", "output": "one"},
        {"type": "function_call_output", "call_id": "c2",
         "output": [{"type": "input_text", "text": "two"}]},
        {"type": "message", "role": "assistant", "content": [
            {"type": "output_text", "text": "done", "annotations": []}]},
    ]]
    req = request(input=[{"role": "user", "content": [
        {"type": "input_text", "text": "look"},
        {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"}]}],
        stream=True)
    chat = json.loads(to_chat(req, history, "m").to_json_bytes())
    assert chat["stream"] is True and chat["stream_options"] == {"include_usage": True}
    messages = chat["messages"]
    assert messages[0] == {"role": "user", "content": "a\nb"}
    # Parallel calls of one turn share one assistant message; the reasoning item is not sent.
    assert messages[1]["role"] == "assistant" and messages[1]["content"] is None
    assert [c["id"] for c in messages[1]["tool_calls"]] == ["c1", "c2"]
    assert messages[2] == {"role": "tool", "content": "one", "tool_call_id": "c1"}
    assert messages[3] == {"role": "tool", "content": "two", "tool_call_id": "c2"}
    assert messages[4] == {"role": "assistant", "content": "done"}
    assert messages[5]["content"] == [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "low"}}]


@pytest.mark.parametrize(("fields", "param"), [
    ({"tools": [{"type": "web_search"}]}, "tools.0.type"),
    ({"input": [{"type": "mcp_call", "id": "m"}]}, "input.0.type"),
    ({"background": True}, "background"),
    ({"tool_choice": {"type": "allowed_tools", "tools": []}}, "tool_choice.type"),
])
def test_what_chat_cannot_carry_is_a_400(fields: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_translatable(request(**fields))
    assert caught.value.param == param


def test_a_chat_completion_becomes_a_response() -> None:
    req = request(tools=[{"type": "function", "name": "f"}])
    chat = ChatBody.model_validate({"model": "m", "choices": [{"finish_reason": "tool_calls",
        "message": {"content": "calling", "reasoning_content": "why",
                    "tool_calls": [{"id": "call_9", "type": "function",
                                    "function": {"name": "f", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10,
                  "prompt_tokens_details": {"cached_tokens": 4}}})
    response = response_from_chat(chat, frame(req), new_id)
    assert response["status"] == "completed" and response["object"] == "response"
    assert [item["type"] for item in response["output"]] == ["reasoning", "message",
                                                             "function_call"]
    assert response["output"][0]["content"] == [{"type": "reasoning_text", "text": "why"}]
    assert response["output"][1]["content"][0]["text"] == "calling"
    assert response["output"][2]["call_id"] == "call_9"
    assert response["usage"] == {"input_tokens": 7, "input_tokens_details": {
        "cached_tokens": 4}, "output_tokens": 3, "output_tokens_details": {
        "reasoning_tokens": 0}, "total_tokens": 10}
    assert response["tools"] == [{"type": "function", "name": "f"}]


def test_a_length_stop_is_incomplete() -> None:
    chat = ChatBody.model_validate({"choices": [{"finish_reason": "length",
                                                 "message": {"content": "cut"}}]})
    response = response_from_chat(chat, frame(request()), new_id)
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert response["output"][0]["status"] == "incomplete"


def _events(data: bytes) -> list[dict[str, object]]:
    events = []
    for block in data.decode().split("\n\n"):
        if block:
            kind, payload = block.split("\n")
            event = json.loads(payload.removeprefix("data: "))
            assert kind == f"event: {event['type']}"
            events.append(event)
    return events


def _chunk(delta: dict[str, object] | None = None, finish: str | None = None,
           usage: dict[str, int] | None = None) -> ChatBody:
    choices = [] if delta is None else [{"delta": delta, "finish_reason": finish}]
    return ChatBody.model_validate({"choices": choices, "usage": usage})


def test_a_chat_stream_becomes_the_typed_event_sequence() -> None:
    translator = ChatStreamTranslator(frame(request()), new_id)
    out = translator.start()
    out += translator.feed(_chunk({"role": "assistant"}))
    out += translator.feed(_chunk({"reasoning_content": "hmm"}))
    out += translator.feed(_chunk({"content": "Hel"}))
    out += translator.feed(_chunk({"content": "lo"}))
    out += translator.feed(_chunk({"tool_calls": [{"index": 0, "id": "call_1", "function": {
        "name": "f", "arguments": "{\"a\""}}]}))
    out += translator.feed(_chunk({"tool_calls": [{"index": 0, "function": {
        "arguments": ": 1}"}}]}, finish="tool_calls"))
    out += translator.feed(_chunk(usage={"prompt_tokens": 3, "completion_tokens": 6,
                                         "total_tokens": 9}))
    out += translator.finish()
    events = _events(out)
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.reasoning_text.delta", "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [
        0, 1, 2]
    completed = events[-1]["response"]
    assert isinstance(completed, dict)
    assert [item["type"] for item in completed["output"]] == ["reasoning", "message",
                                                              "function_call"]
    assert completed["output"][1]["content"][0]["text"] == "Hello"
    assert completed["output"][2]["arguments"] == '{"a": 1}'
    assert completed["usage"]["output_tokens"] == 6
    assert translator.output_deltas == 5


def test_a_stream_without_a_finish_is_failed() -> None:
    translator = ChatStreamTranslator(frame(request()), new_id)
    out = translator.start() + translator.feed(_chunk({"content": "par"})) + translator.finish()
    events = _events(out)
    assert events[-1]["type"] == "response.failed"
    assert events[-2]["type"] == "response.output_item.done"  # the open item is closed first


def test_an_empty_answer_is_an_empty_message() -> None:
    translator = ChatStreamTranslator(frame(request()), new_id)
    out = translator.start() + translator.feed(_chunk({}, finish="stop")) + translator.finish()
    events = _events(out)
    final = events[-1]["response"]
    assert isinstance(final, dict)
    assert final["output"][0]["content"][0]["text"] == ""
    assert events[-1]["type"] == "response.completed"
