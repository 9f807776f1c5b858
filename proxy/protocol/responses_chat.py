"""The Responses API translated to chat completions and back, for pools that serve only chat.

Pure: a request (with the conversation history the proxy stored) becomes a chat request; a
chat completion becomes a response object; a chat stream becomes the typed Responses event
sequence (`ChatStreamTranslator`). Ids come from the caller's `new_id`, the clock from its
`created_at`. Reasoning items in the input have no chat equivalent and are not sent (they stay
in the stored history); a chat upstream's `reasoning_content` comes back as a reasoning item.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from proxy.errors import InvalidRequest
from proxy.protocol.chat import ChatCompletionRequest, ChatMessage
from proxy.protocol.chat import ContentPart as ChatPart
from proxy.protocol.responses import (
    TRANSLATABLE_ITEM_TYPES,
    InputItem,
    ResponsesRequest,
    check_item,
)
from proxy.protocol.streaming import StreamOptions

# Responses fields that the translation consumes or that have no chat counterpart; any other
# field (vendor extensions such as top_k or seed) is passed to the chat upstream.
_CONSUMED = frozenset({
    "model", "input", "instructions", "previous_response_id", "store", "stream", "background",
    "tools", "tool_choice", "parallel_tool_calls", "text", "max_output_tokens", "temperature",
    "top_p", "include", "truncation", "reasoning", "metadata", "stream_options",
    "top_logprobs", "max_tool_calls", "conversation", "prompt", "prompt_cache_retention",
    "context_management",
})
NewId = Callable[[str], str]


def check_translatable(request: ResponsesRequest) -> None:
    """A 400 naming the parameter for what a chat-only pool cannot be given."""
    for index, item in enumerate(request.model_dump(exclude_unset=True).get("input") or []):
        if isinstance(item, dict):
            check_item(item, f"input.{index}", TRANSLATABLE_ITEM_TYPES)
    for index, tool in enumerate(request.tools or []):
        if tool.type != "function":
            raise InvalidRequest(
                f"Invalid value for 'tools.{index}.type': {tool.type!r} tools are not "
                "available for this model (its pool serves chat completions; only "
                "'function' tools translate).", code="unsupported_value",
                param=f"tools.{index}.type")
    if request.background:
        raise InvalidRequest("background responses are not supported for this model (its pool "
                             "serves chat completions).", code="unsupported_value",
                             param="background")
    choice = request.tool_choice
    if isinstance(choice, dict) and choice.get("type") != "function":
        raise InvalidRequest(f"Invalid value for 'tool_choice.type': {choice.get('type')!r} "
                             "has no chat equivalent.", code="unsupported_value",
                             param="tool_choice.type")


def to_chat(request: ResponsesRequest, history: list[InputItem],
            upstream_model: str) -> ChatCompletionRequest:
    """The chat request for `history` (earlier turns) + the request's own input."""
    messages: list[ChatMessage] = []
    if request.instructions:
        messages.append(ChatMessage(role="system", content=request.instructions))
    for item in [*history, *request.items()]:
        _append(messages, item)
    values: dict[str, Any] = {"model": upstream_model, "messages": messages}
    if request.stream:
        values["stream"] = True
        values["stream_options"] = StreamOptions(include_usage=True)
    for name in ("temperature", "top_p", "parallel_tool_calls"):
        if getattr(request, name) is not None:
            values[name] = getattr(request, name)
    if request.max_output_tokens is not None:
        values["max_tokens"] = request.max_output_tokens  # what llama.cpp/Ollama/vLLM all read
    if request.tools:
        values["tools"] = [{"type": "function", "function": tool.model_dump(
            exclude_unset=True, exclude={"type"})} for tool in request.tools]
    choice = request.tool_choice
    if isinstance(choice, dict):
        values["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        values["tool_choice"] = choice
    response_format = _response_format(request)
    if response_format is not None:
        values["response_format"] = response_format
    extra = request.model_extra or {}
    reasoning = extra.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        values["reasoning_effort"] = reasoning["effort"]
    if isinstance(extra.get("top_logprobs"), int):
        values |= {"logprobs": True, "top_logprobs": extra["top_logprobs"]}
    values |= {k: v for k, v in extra.items() if k not in _CONSUMED}
    return ChatCompletionRequest.model_validate(values)


def _response_format(request: ResponsesRequest) -> dict[str, Any] | None:
    fmt = request.text.format if request.text is not None else None
    if fmt is None or fmt.type == "text":
        return None
    if fmt.type == "json_object":
        return {"type": "json_object"}
    schema: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema_ or {}}
    schema |= {k: v for k, v in (("strict", fmt.strict), ("description", fmt.description))
               if v is not None}
    return {"type": "json_schema", "json_schema": schema}


def _append(messages: list[ChatMessage], item: InputItem) -> None:
    if item.type == "message":
        if item.role == "assistant":
            text, refusal = _assistant_text(item)
            message = ChatMessage(role="assistant", content=text)
            if refusal:
                message = ChatMessage(role="assistant", content=text or None, refusal=refusal)
            messages.append(message)
        else:
            messages.append(ChatMessage(role=item.role, content=_chat_content(item)))
    elif item.type == "function_call":
        call = {"id": item.call_id, "type": "function",
                "function": {"name": item.name, "arguments": item.arguments or ""}}
        last = messages[-1] if messages else None
        calls = (last.model_extra or {}).get("tool_calls") if last is not None else None
        if last is not None and last.role == "assistant" and isinstance(calls, list):
            calls.append(call)  # parallel calls of one turn share one assistant message
        else:
            messages.append(ChatMessage(role="assistant", content=None, tool_calls=[call]))
    elif item.type == "function_call_output":
        messages.append(ChatMessage(role="tool", content=item.text(),
                                    tool_call_id=item.call_id))
    # reasoning: a chat upstream takes no reasoning input (kept in the stored history only)


def _assistant_text(item: InputItem) -> tuple[str, str]:
    if isinstance(item.content, str):
        return item.content, ""
    text = "".join(part.text or "" for part in item.content or [] if part.type != "refusal")
    refusal = "".join(str((part.model_extra or {}).get("refusal") or part.text or "")
                      for part in item.content or [] if part.type == "refusal")
    return text, refusal


def _chat_content(item: InputItem) -> str | list[ChatPart]:
    content = item.content
    if content is None or isinstance(content, str):
        return content or ""
    if all(part.type in ("input_text", "output_text") for part in content):
        return "\n".join(part.text or "" for part in content)  # vLLM's join of text parts
    parts: list[ChatPart] = []
    for part in content:
        extra = part.model_extra or {}
        if part.type in ("input_text", "output_text"):
            parts.append(ChatPart(type="text", text=part.text or ""))
        elif part.type == "input_image":
            url = extra.get("image_url") or extra.get("file_id")
            image = {"url": url} | ({"detail": extra["detail"]} if "detail" in extra else {})
            parts.append(ChatPart(type="image_url", image_url=image))
        elif part.type == "input_file":
            parts.append(ChatPart(type="file", file={k: extra[k] for k in (
                "file_data", "file_id", "filename") if k in extra}))
        elif part.type == "input_audio":
            parts.append(ChatPart(type="input_audio", input_audio=extra.get("input_audio")))
    return parts


class _Probe(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ChatFunction(_Probe):
    """A (possibly partial) function of a chat tool call."""

    name: str | None = None
    arguments: str | None = None


class ChatToolCall(_Probe):
    """A chat tool call, or one streamed fragment of it."""

    index: int = 0
    id: str | None = None
    function: ChatFunction = ChatFunction()


class ChatOutput(_Probe):
    """A chat message or stream delta."""

    content: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None  # vLLM >= 0.10 names it so
    refusal: str | None = None
    tool_calls: list[ChatToolCall] | None = None

    def reasoning_text(self) -> str | None:
        """The reasoning text under either name."""
        return self.reasoning_content or self.reasoning


class ChatChoice(_Probe):
    """One choice of a chat completion or chunk."""

    message: ChatOutput | None = None
    delta: ChatOutput | None = None
    finish_reason: str | None = None


class ChatUsage(_Probe):
    """Chat usage, with the details the Responses usage carries."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: dict[str, Any] | None = None
    completion_tokens_details: dict[str, Any] | None = None

    def as_responses(self) -> dict[str, Any]:
        """Responses' `usage` object."""
        cached = (self.prompt_tokens_details or {}).get("cached_tokens") or 0
        reasoning = (self.completion_tokens_details or {}).get("reasoning_tokens") or 0
        return {"input_tokens": self.prompt_tokens,
                "input_tokens_details": {"cached_tokens": cached},
                "output_tokens": self.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": reasoning},
                "total_tokens": self.total_tokens or self.prompt_tokens + self.completion_tokens}


class ChatBody(_Probe):
    """A chat completion, or one chunk of a chat stream."""

    model: str | None = None
    choices: list[ChatChoice] = []
    usage: ChatUsage | None = None
    error: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class ResponseFrame:
    """What a translated response echoes of its request, and its identity."""

    response_id: str
    created_at: int
    model: str
    request: ResponsesRequest
    previous_response_id: str | None

    def shell(self, status: str) -> dict[str, Any]:
        """The response object with no output yet."""
        request = self.request
        fmt = request.text.format if request.text is not None else None
        text = {"format": fmt.model_dump(by_alias=True, exclude_unset=True)
                if fmt is not None else {"type": "text"}}
        return {
            "id": self.response_id, "object": "response", "created_at": self.created_at,
            "status": status, "error": None, "incomplete_details": None,
            "instructions": request.instructions, "max_output_tokens": request.max_output_tokens,
            "model": self.model, "output": [],
            "parallel_tool_calls": request.parallel_tool_calls is not False,
            "previous_response_id": self.previous_response_id,
            "reasoning": (request.model_extra or {}).get("reasoning") or {
                "effort": None, "summary": None},
            "store": request.stores, "temperature": request.temperature, "text": text,
            "tool_choice": request.tool_choice or "auto",
            "tools": [t.model_dump(exclude_unset=True) for t in request.tools or []],
            "top_p": request.top_p, "truncation": "disabled", "usage": None,
            "metadata": (request.model_extra or {}).get("metadata") or {},
        }

    def finished(self, output: list[dict[str, Any]], finish_reason: str | None,
                 usage: ChatUsage | None) -> dict[str, Any]:
        """The response object at its end."""
        incomplete = {"length": "max_output_tokens",
                      "content_filter": "content_filter"}.get(finish_reason or "")
        body = self.shell("incomplete" if incomplete else "completed")
        body["output"] = output
        if incomplete:
            body["incomplete_details"] = {"reason": incomplete}
        body["usage"] = usage.as_responses() if usage is not None else None
        return body


def response_from_chat(chat: ChatBody, frame: ResponseFrame, new_id: NewId) -> dict[str, Any]:
    """A chat completion as a response object."""
    choice = chat.choices[0] if chat.choices else ChatChoice()
    message = choice.message or ChatOutput()
    status = "incomplete" if choice.finish_reason in ("length", "content_filter") else (
        "completed")
    output: list[dict[str, Any]] = []
    reasoning = message.reasoning_text()
    if reasoning:
        output.append(_reasoning_item(new_id("rs"), reasoning, status))
    if message.content or message.refusal or not message.tool_calls:
        output.append(_message_item(new_id("msg"), message.content or "", status,
                                    refusal=message.refusal))
    for call in message.tool_calls or []:
        output.append(_call_item(new_id("fc"), call.id or new_id("call"),
                                 call.function.name or "", call.function.arguments or "",
                                 "completed"))
    return frame.finished(output, choice.finish_reason, chat.usage)


def _message_item(item_id: str, text: str, status: str, *,
                  refusal: str | None = None) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    if text or not refusal:
        content.append({"type": "output_text", "text": text, "annotations": [],
                        "logprobs": []})
    if refusal:
        content.append({"type": "refusal", "refusal": refusal})
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": content}


def _reasoning_item(item_id: str, text: str, status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "reasoning", "summary": [], "status": status,
            "content": [{"type": "reasoning_text", "text": text}]}


def _call_item(item_id: str, call_id: str, name: str, arguments: str,
               status: str) -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}


@dataclasses.dataclass
class _Open:
    """An output item being streamed."""

    index: int
    kind: str  # reasoning | message | call
    item_id: str
    text: str = ""
    call_id: str = ""
    name: str = ""


class ChatStreamTranslator:
    """Chat stream chunks in, the Responses event sequence out (as SSE bytes).

    `response.created` and `response.in_progress` open the stream; each output item is
    announced (`output_item.added`, `content_part.added`), streamed (`output_text.delta`,
    `reasoning_text.delta`, `function_call_arguments.delta`) and closed (`.done` events) in
    order; `response.completed` (or `.incomplete`, `.failed`) ends it with usage.
    """

    def __init__(self, frame: ResponseFrame, new_id: NewId) -> None:
        self._frame = frame
        self._new_id = new_id
        self._sequence = 0
        self._open: list[_Open] = []
        self._calls: dict[int, _Open] = {}
        self.output: list[dict[str, Any]] = []
        self.finish_reason: str | None = None
        self.usage: ChatUsage | None = None
        self.final: dict[str, Any] | None = None  # the response object once the stream ended
        self.output_deltas = 0

    def start(self) -> bytes:
        """The two lifecycle events that open the stream."""
        shell = self._frame.shell("in_progress")
        return (self._event("response.created", response=shell)
                + self._event("response.in_progress", response=shell))

    def feed(self, chunk: ChatBody) -> bytes:
        """The events for one chat chunk."""
        out = bytearray()
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices[:1]:  # Responses has one output; n > 1 is not asked for
            delta = choice.delta or ChatOutput()
            reasoning = delta.reasoning_text()
            if reasoning:
                out += self._text_delta("reasoning", reasoning)
            if delta.content:
                out += self._text_delta("message", delta.content)
            for call in delta.tool_calls or []:
                out += self._call_delta(call)
            if choice.finish_reason:
                if not self.output and not self._open and not self._calls:
                    out += self._added(self._begin("message"))  # an empty answer is a message
                self.finish_reason = choice.finish_reason
                out += self._close_all()
        return bytes(out)

    def finish(self) -> bytes:
        """The closing events once the upstream has ended."""
        out = bytearray(self._close_all())
        if self.finish_reason is None:
            failed = self._frame.finished(self.output, None, self.usage)
            failed |= {"status": "failed", "error": {
                "code": "server_error",
                "message": "the upstream closed the stream without finishing"}}
            self.final = failed
            return bytes(out + self._event("response.failed", response=failed))
        self.final = self._frame.finished(self.output, self.finish_reason, self.usage)
        kind = "response.incomplete" if self.final["status"] == "incomplete" else (
            "response.completed")
        return bytes(out + self._event(kind, response=self.final))

    def failure(self, message: str) -> bytes:
        """An upstream failure mid-stream: an `error` event, then `response.failed`."""
        out = self._event("error", code="server_error", message=message, param=None)
        out += self._close_all("incomplete")
        failed = self._frame.finished(self.output, None, self.usage)
        failed |= {"status": "failed", "error": {"code": "server_error", "message": message}}
        self.final = failed
        self.finish_reason = "error"
        return out + self._event("response.failed", response=failed)

    def _text_delta(self, kind: str, text: str) -> bytes:
        out = bytearray()
        current = self._open[-1] if self._open else None
        if current is None or current.kind != kind:
            out += self._close_all()
            current = self._begin(kind)
            out += self._added(current)
        current.text += text
        self.output_deltas += 1
        event = ("response.output_text.delta" if kind == "message"
                 else "response.reasoning_text.delta")
        extra: dict[str, Any] = {"logprobs": []} if kind == "message" else {}
        out += self._event(event, item_id=current.item_id, output_index=current.index,
                           content_index=0, delta=text, **extra)
        return bytes(out)

    def _call_delta(self, call: ChatToolCall) -> bytes:
        out = bytearray()
        current = self._calls.get(call.index)
        if current is None:
            out += self._close_all()
            current = self._begin("call")
            current.call_id = call.id or self._new_id("call")
            current.name = call.function.name or ""
            self._calls[call.index] = current
            out += self._added(current)
        arguments = call.function.arguments or ""
        if arguments:
            current.text += arguments
            self.output_deltas += 1
            out += self._event("response.function_call_arguments.delta",
                               item_id=current.item_id, output_index=current.index,
                               delta=arguments)
        return bytes(out)

    def _begin(self, kind: str) -> _Open:
        prefix = {"reasoning": "rs", "message": "msg", "call": "fc"}[kind]
        current = _Open(len(self.output) + len(self._open), kind, self._new_id(prefix))
        self._open.append(current)
        return current

    def item(self, current: _Open, status: str) -> dict[str, Any]:
        """The item as it stands (in progress, or done)."""
        if current.kind == "message":
            return _message_item(current.item_id, current.text, status)
        if current.kind == "reasoning":
            return _reasoning_item(current.item_id, current.text, status)
        return _call_item(current.item_id, current.call_id, current.name, current.text, status)

    def _close_all(self, status: str | None = None) -> bytes:
        out = bytearray()
        for current in self._open:
            done_status = status or ("incomplete" if self.finish_reason == "length"
                                     and current.kind != "call" else "completed")
            ids = {"item_id": current.item_id, "output_index": current.index}
            if current.kind == "message":
                out += self._event("response.output_text.done", **ids, content_index=0,
                                   text=current.text, logprobs=[])
                out += self._event("response.content_part.done", **ids, content_index=0,
                                   part={"type": "output_text", "text": current.text,
                                         "annotations": [], "logprobs": []})
            elif current.kind == "reasoning":
                out += self._event("response.reasoning_text.done", **ids, content_index=0,
                                   text=current.text)
            else:
                out += self._event("response.function_call_arguments.done", **ids,
                                   name=current.name, arguments=current.text)
            done = self.item(current, done_status)
            self.output.append(done)
            out += self._event("response.output_item.done", output_index=current.index,
                               item=done)
        self._open.clear()
        return bytes(out)

    def _added(self, current: _Open) -> bytes:
        """`output_item.added` (and `content_part.added` for a message) for a new item."""
        out = self._event("response.output_item.added", output_index=current.index,
                                item=self.item(current, "in_progress"))
        if current.kind == "message":
            out += self._event("response.content_part.added", item_id=current.item_id,
                                     output_index=current.index, content_index=0,
                                     part={"type": "output_text", "text": "", "annotations": [],
                                           "logprobs": []})
        elif current.kind == "reasoning":
            out += self._event("response.content_part.added", item_id=current.item_id,
                                     output_index=current.index, content_index=0,
                                     part={"type": "reasoning_text", "text": ""})
        return out

    def _event(self, kind: str, **fields: Any) -> bytes:
        document = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        data = json.dumps(document, separators=(",", ":"))
        return f"event: {kind}\ndata: {data}\n\n".encode()

