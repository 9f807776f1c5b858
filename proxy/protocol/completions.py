"""`POST /v1/completions` (legacy text completion) request model."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr

from proxy.protocol.base import MAX_TOKENS, WireModel
from proxy.protocol.streaming import StreamOptions

Prompt = StrictStr | list[StrictStr] | list[StrictInt] | list[list[StrictInt]]


class CompletionRequest(WireModel):
    """A text completion request."""

    model: StrictStr = Field(min_length=1)
    prompt: Prompt
    stream: StrictBool | None = None
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[StrictInt, Field(ge=0, le=MAX_TOKENS)] | None = None
    n: Annotated[StrictInt, Field(ge=1, le=128)] | None = None
    temperature: Annotated[StrictFloat | StrictInt, Field(ge=0, le=2)] | None = None
    top_p: Annotated[StrictFloat | StrictInt, Field(ge=0, le=1)] | None = None

    @property
    def is_stream(self) -> bool:
        """Whether the client asked for server-sent events."""
        return bool(self.stream)

    def prompt_chars(self) -> int:
        """Characters of prompt text (token-id prompts count four characters a token)."""
        return _prompt_chars(self.prompt)

    def task_text(self) -> str:
        """The text a task class is read from (the first text prompt)."""
        prompt = self.prompt
        if isinstance(prompt, str):
            return prompt
        return next((p for p in prompt if isinstance(p, str)), "")

    def is_structured(self) -> bool:
        """Completions have no tools or JSON mode."""
        return False


class EmbeddingRequest(WireModel):
    """An embeddings request; never streamed."""

    model: StrictStr = Field(min_length=1)
    input: Prompt
    encoding_format: StrictStr | None = None
    dimensions: Annotated[StrictInt, Field(ge=1)] | None = None

    @property
    def is_stream(self) -> bool:
        """Embeddings never stream."""
        return False

    def prompt_chars(self) -> int:
        """Characters of input text."""
        return _prompt_chars(self.input)


def _prompt_chars(prompt: str | list[str] | list[int] | list[list[int]]) -> int:
    if isinstance(prompt, str):
        return len(prompt)
    total = 0
    for item in prompt:
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, int):
            total += 4
        else:
            total += 4 * len(item)
    return total
