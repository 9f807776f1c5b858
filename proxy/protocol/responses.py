"""`POST /v1/responses` request model, its input items, and the stored-response views.

Items are checked by hand before pydantic sees them, so that every problem becomes a 400
that names the exact parameter (`input.3.type`), in the same dotted form as chat's errors.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator

from proxy.errors import InvalidRequest
from proxy.protocol.base import MAX_TOKENS, WireModel

# Every input item type of the Responses API (openai-python 3.57's ResponseInputItemParam).
# Native pools take all of them; a new type is one line here.
ITEM_TYPES = frozenset({
    "message", "function_call", "function_call_output", "reasoning", "item_reference",
    "file_search_call", "computer_call", "computer_call_output", "web_search_call",
    "image_generation_call", "code_interpreter_call", "local_shell_call",
    "local_shell_call_output", "shell_call", "shell_call_output", "apply_patch_call",
    "apply_patch_call_output", "mcp_list_tools", "mcp_approval_request",
    "mcp_approval_response", "mcp_call", "custom_tool_call", "custom_tool_call_output",
    "compaction", "tool_search_call", "tool_search_output",
})
# The ones a chat-only pool can be given (reasoning items are kept in the stored history but
# a chat upstream has no way to take them back; see protocol/responses_chat.py).
TRANSLATABLE_ITEM_TYPES = frozenset({"message", "function_call", "function_call_output",
                                     "reasoning"})
ROLES = frozenset({"user", "assistant", "system", "developer"})
PART_TYPES = frozenset({"input_text", "input_image", "input_file", "input_audio",
                        "output_text", "refusal"})
_REQUIRED: dict[str, tuple[str, ...]] = {
    "function_call": ("call_id", "name", "arguments"),
    "function_call_output": ("call_id", "output"),
    "item_reference": ("id",),
}


class ContentPart(WireModel):
    """One part of a message's content (input_text, input_image, output_text, ...)."""

    type: StrictStr
    text: StrictStr | None = None


class InputItem(WireModel):
    """One item of `input`: a message, a function call or its output, a reasoning item, ..."""

    type: StrictStr = "message"
    id: StrictStr | None = None
    role: StrictStr | None = None
    # Messages and function outputs are checked by `check_item`; other item types (computer
    # calls, MCP, ...) carry their own shapes, passed to native pools as they came.
    content: StrictStr | list[ContentPart] | Any = None
    call_id: StrictStr | None = None
    name: StrictStr | None = None
    arguments: StrictStr | None = None
    output: StrictStr | list[ContentPart] | Any = None

    def text(self) -> str:
        """The item's text (message content, or a function output), parts joined by spaces."""
        value = self.content if self.type == "message" else self.output
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return " ".join(part.text or "" for part in value if isinstance(part, ContentPart))
        return ""


class FunctionTool(WireModel):
    """A tool the model may call; only `function` tools have a chat equivalent."""

    type: StrictStr
    name: StrictStr | None = None
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class TextFormat(WireModel):
    """`text.format`: plain text, JSON mode, or a JSON schema."""

    type: Literal["text", "json_object", "json_schema"]
    name: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: StrictBool | None = None
    description: StrictStr | None = None


class TextConfig(WireModel):
    """`text`: the output format (and verbosity, passed through)."""

    format: TextFormat | None = None


class ResponsesRequest(WireModel):
    """A Responses API request; fields the proxy does not read pass through as extras."""

    model: StrictStr = Field(min_length=1)
    input: StrictStr | list[InputItem]
    instructions: StrictStr | None = None
    previous_response_id: StrictStr | None = Field(default=None, min_length=1)
    store: StrictBool | None = None
    stream: StrictBool | None = None
    background: StrictBool | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: StrictStr | dict[str, Any] | None = None
    parallel_tool_calls: StrictBool | None = None
    text: TextConfig | None = None
    max_output_tokens: Annotated[StrictInt, Field(ge=1, le=MAX_TOKENS)] | None = None
    temperature: Annotated[StrictFloat | StrictInt, Field(ge=0, le=2)] | None = None
    top_p: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)] | None = None

    @field_validator("input", mode="before")
    @classmethod
    def _check_items(cls, value: object) -> object:
        if isinstance(value, list):
            for index, item in enumerate(value):
                check_item(item, f"input.{index}", ITEM_TYPES)
        elif not isinstance(value, str):
            raise InvalidRequest("Invalid value for 'input': expected a string or a list of "
                                 "input items.", code="invalid_type", param="input")
        return value

    @field_validator("tools", mode="before")
    @classmethod
    def _check_tools(cls, value: object) -> object:
        if isinstance(value, list):
            for index, tool in enumerate(value):
                if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
                    raise InvalidRequest(f"Invalid value for 'tools.{index}': expected an "
                                         "object with a 'type'.", code="invalid_type",
                                         param=f"tools.{index}")
                if tool["type"] == "function" and not isinstance(tool.get("name"), str):
                    raise InvalidRequest(f"Missing required parameter: 'tools.{index}.name'.",
                                         code="missing_required_parameter",
                                         param=f"tools.{index}.name")
        return value

    @property
    def is_stream(self) -> bool:
        """Whether the client asked for server-sent events."""
        return bool(self.stream)

    @property
    def stores(self) -> bool:
        """Whether the response is to be kept (OpenAI's default is yes)."""
        return self.store is not False

    def items(self) -> list[InputItem]:
        """`input` as items (a string is one user message)."""
        if isinstance(self.input, str):
            return [InputItem(type="message", role="user", content=self.input)]
        return list(self.input)

    def prompt_chars(self) -> int:
        """Characters of prompt text, for the labelled fallback token estimate."""
        return len(self.instructions or "") + sum(len(item.text()) for item in self.items())

    def task_text(self) -> str:
        """The text a task class is read from: the last user message."""
        for item in reversed(self.items()):
            if item.type == "message" and item.role == "user":
                return item.text()
        return ""

    def is_structured(self) -> bool:
        """Tools or JSON output: a shortened answer could break the contract."""
        fmt = self.text.format if self.text is not None else None
        return bool(self.tools) or (fmt is not None and fmt.type != "text")


def check_item(item: object, param: str, allowed: frozenset[str]) -> None:
    """Raise a 400 naming the parameter if `item` is not a well-formed input item."""
    if not isinstance(item, dict):
        raise InvalidRequest(f"Invalid value for '{param}': expected an object.",
                             code="invalid_type", param=param)
    kind = item.get("type", "message" if "role" in item else None)
    if kind is None:
        raise InvalidRequest(f"Missing required parameter: '{param}.type'.",
                             code="missing_required_parameter", param=f"{param}.type")
    if not isinstance(kind, str) or kind not in allowed:
        supported = ", ".join(sorted(allowed))
        raise InvalidRequest(f"Invalid value for '{param}.type': {kind!r} is not a supported "
                             f"input item type here (supported: {supported}).",
                             code="invalid_value", param=f"{param}.type")
    for field in _REQUIRED.get(kind, ()):
        if field not in item:
            raise InvalidRequest(f"Missing required parameter: '{param}.{field}'.",
                                 code="missing_required_parameter", param=f"{param}.{field}")
    for field in ("call_id", "name", "arguments", "id"):
        if field in item and not isinstance(item[field], str):
            raise InvalidRequest(f"Invalid type for '{param}.{field}': expected a string.",
                                 code="invalid_type", param=f"{param}.{field}")
    if kind == "message":
        _check_message(item, param)
    elif kind == "function_call_output":
        _check_content(item.get("output"), f"{param}.output", required=True)


def _check_message(item: dict[str, Any], param: str) -> None:
    role = item.get("role")
    if role not in ROLES:
        raise InvalidRequest(f"Invalid value for '{param}.role': {role!r} (supported: "
                             f"{', '.join(sorted(ROLES))}).", code="invalid_value",
                             param=f"{param}.role")
    _check_content(item.get("content"), f"{param}.content", required=True)


def _check_content(content: object, param: str, *, required: bool) -> None:
    if content is None and required:
        raise InvalidRequest(f"Missing required parameter: '{param}'.",
                             code="missing_required_parameter", param=param)
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(f"Invalid type for '{param}': expected a string or a list of "
                             "content parts.", code="invalid_type", param=param)
    for index, part in enumerate(content):
        where = f"{param}.{index}"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in PART_TYPES:
            raise InvalidRequest(f"Invalid value for '{where}.type': {kind!r} is not a content "
                                 f"part type (supported: {', '.join(sorted(PART_TYPES))}).",
                                 code="invalid_value", param=f"{where}.type")
        assert isinstance(part, dict)
        text = part.get("text")
        if kind in ("input_text", "output_text", "refusal") and not isinstance(
                text if kind != "refusal" else part.get("refusal", text), str):
            raise InvalidRequest(f"Missing required parameter: '{where}.text'.",
                                 code="missing_required_parameter", param=f"{where}.text")


class ResponseUsage(WireModel):
    """`usage` of a response."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class ResponseProbe(WireModel):
    """What the proxy reads from a response object (unary body or a lifecycle event's)."""

    id: StrictStr | None = None
    status: StrictStr | None = None
    usage: ResponseUsage | None = None
    output: list[dict[str, Any]] = []
    incomplete_details: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    def output_chars(self) -> int:
        """Characters of generated text and call arguments."""
        total = 0
        for item in self.output:
            total += len(str(item.get("arguments") or ""))
            for part in item.get("content") or []:
                if isinstance(part, dict):
                    total += len(str(part.get("text") or ""))
        return total

    def finish_reason(self) -> str | None:
        """The ledger's finish reason in chat's terms (stop, length, tool_calls, ...)."""
        if self.status == "incomplete":
            reason = (self.incomplete_details or {}).get("reason")
            return "length" if reason == "max_output_tokens" else str(reason or "incomplete")
        if self.status == "completed":
            calls = any(item.get("type") == "function_call" for item in self.output)
            return "tool_calls" if calls else "stop"
        return self.status


class StreamEventProbe(WireModel):
    """The parts of one Responses stream event the proxy reads."""

    type: StrictStr = ""
    response: ResponseProbe | None = None
    delta: Any = None


class InputItemList(WireModel):
    """`GET /v1/responses/{id}/input_items`."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    first_id: str | None
    last_id: str | None
    has_more: bool
