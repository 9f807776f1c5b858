"""Streaming options and the parts of responses the proxy reads (usage, deltas)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, StrictBool

from proxy.protocol.base import WireModel


class StreamOptions(WireModel):
    """`stream_options`: the proxy forces `include_usage` upstream."""

    include_usage: StrictBool | None = None


class Usage(BaseModel):
    """Token usage as upstreams report it."""

    model_config = ConfigDict(extra="ignore")

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class _Probe(BaseModel):
    model_config = ConfigDict(extra="ignore")


class DeltaProbe(_Probe):
    """The delta of a streamed chat choice (only what marks a token)."""

    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[object] | None = None


class ChoiceProbe(_Probe):
    """A choice of a response or stream chunk."""

    delta: DeltaProbe | None = None
    message: DeltaProbe | None = None
    text: str | None = None
    finish_reason: str | None = None

    def output_chars(self) -> int:
        """Characters of generated text in a whole (non-streamed) choice."""
        message = self.message
        return len(self.text or "") + (len(message.content or "") if message else 0)

    def carries_token(self) -> bool:
        """Whether this choice holds generated text or a tool call."""
        if self.text:
            return True
        delta = self.delta
        return delta is not None and bool(
            delta.content or delta.reasoning_content or delta.tool_calls
        )


class ResponseProbe(_Probe):
    """What the proxy reads from a (non-streamed) response or one stream chunk."""

    choices: list[ChoiceProbe] = []
    usage: Usage | None = None
    error: dict[str, object] | None = None  # some servers report failures in-stream

    def output_chars(self) -> int:
        """Characters of generated text over all choices."""
        return sum(choice.output_chars() for choice in self.choices)

    def finish_reason(self) -> str | None:
        """The first choice's finish reason."""
        return self.choices[0].finish_reason if self.choices else None
