"""Injecting a directive into a request (pure: returns a new request model).

Chat: a system message with the directive text goes right after the client's own leading
system/developer messages (so a shared system prefix stays cacheable upstream), or first if
there are none. Completions (no roles): the documented equivalent is the directive and a blank
line before each text prompt; token-id prompts cannot carry text and are left unchanged.
Responses: a system message item at the start of this turn's `input`, after its own leading
system/developer items. `instructions` stays byte-identical and the earlier turns
(`previous_response_id`) come before this turn's input, so the cacheable prefix is the
instructions and the whole earlier conversation, and the stored history never holds a
directive (each turn gets its own draw).
"""

from __future__ import annotations

from proxy.protocol.chat import ChatCompletionRequest, ChatMessage
from proxy.protocol.completions import CompletionRequest
from proxy.protocol.responses import InputItem, ResponsesRequest

_LEADING_ROLES = ("system", "developer")


def inject_chat(request: ChatCompletionRequest, text: str) -> ChatCompletionRequest:
    """The request with the directive's system message inserted."""
    messages = list(request.messages)
    position = 0
    while position < len(messages) and messages[position].role in _LEADING_ROLES:
        position += 1
    messages.insert(position, ChatMessage(role="system", content=text))
    return request.model_copy(update={"messages": messages})


def inject_completion(request: CompletionRequest) -> bool:
    """Whether a completion prompt can carry a directive (text prompts only)."""
    prompt = request.prompt
    return isinstance(prompt, str) or (
        isinstance(prompt, list) and bool(prompt) and all(isinstance(p, str) for p in prompt)
    )


def inject_completion_text(request: CompletionRequest, text: str) -> CompletionRequest:
    """The request with `text` and a blank line before each text prompt."""
    prompt = request.prompt
    if isinstance(prompt, str):
        return request.model_copy(update={"prompt": f"{text}\n\n{prompt}"})
    return request.model_copy(update={"prompt": [f"{text}\n\n{p}" for p in prompt]})


def inject_responses(request: ResponsesRequest, text: str) -> ResponsesRequest:
    """The request with the directive's system item inserted into this turn's input."""
    items = request.items()
    position = 0
    while (position < len(items) and items[position].type == "message"
           and items[position].role in _LEADING_ROLES):
        position += 1
    items.insert(position, InputItem(type="message", role="system", content=text))
    return request.model_copy(update={"input": items})
