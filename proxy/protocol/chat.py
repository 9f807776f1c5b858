"""`POST /v1/chat/completions` request model."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

from proxy.protocol.base import MAX_TOKENS, WireModel
from proxy.protocol.streaming import StreamOptions

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ContentPart(WireModel):
    """One part of a multimodal message (text, image_url, input_audio, file, ...)."""

    type: StrictStr
    text: StrictStr | None = None


class ChatMessage(WireModel):
    """One message of the conversation."""

    role: Role
    content: StrictStr | list[ContentPart] | None = None
    name: StrictStr | None = None

    def text_chars(self) -> int:
        """Characters of text in this message (for labelled token estimates)."""
        if isinstance(self.content, str):
            return len(self.content)
        if self.content is None:
            return 0
        return sum(len(part.text or "") for part in self.content)


class ChatCompletionRequest(WireModel):
    """A chat completion request; fields the proxy does not read pass through as extras."""

    model: StrictStr = Field(min_length=1)
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    # Bounded like OpenAI's own limits (a 32-bit count): a larger value is a clear 400.
    max_tokens: Annotated[StrictInt, Field(ge=1, le=MAX_TOKENS)] | None = None
    max_completion_tokens: Annotated[StrictInt, Field(ge=1, le=MAX_TOKENS)] | None = None
    n: Annotated[StrictInt, Field(ge=1, le=128)] | None = None
    temperature: Annotated[StrictFloat | StrictInt, Field(ge=0, le=2)] | None = None
    top_p: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)] | None = None

    @property
    def is_stream(self) -> bool:
        """Whether the client asked for server-sent events."""
        return bool(self.stream)

    def prompt_chars(self) -> int:
        """Characters of prompt text, for the labelled fallback token estimate."""
        return sum(message.text_chars() for message in self.messages)

    def task_text(self) -> str:
        """The text a task class is read from: the last user message."""
        for message in reversed(self.messages):
            if message.role == "user":
                if isinstance(message.content, str):
                    return message.content
                return " ".join(part.text or "" for part in message.content or [])
        return ""

    def is_structured(self) -> bool:
        """Tools, functions or JSON output: a shortened answer could break the contract."""
        extra = self.model_extra or {}
        response_format = extra.get("response_format")
        json_output = isinstance(response_format, dict) and str(
            response_format.get("type", "")).startswith("json")
        return bool(extra.get("tools") or extra.get("functions") or json_output)
