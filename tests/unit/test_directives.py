"""Directive injection and policy."""

from __future__ import annotations

import pytest

from proxy.directives.catalogue import DEFAULT_LEVELS, Catalogue, DirectiveLevel
from proxy.directives.injection import inject_chat, inject_completion, inject_completion_text
from proxy.directives.policy import Choice, KeyPolicy, choose
from proxy.errors import InvalidRequest
from proxy.protocol.chat import ChatCompletionRequest
from proxy.protocol.completions import CompletionRequest

CATALOGUE = Catalogue(DEFAULT_LEVELS)
TEXT = "Always answer briefly"


def _chat(messages: list[dict]) -> ChatCompletionRequest:  # type: ignore[type-arg]
    return ChatCompletionRequest.model_validate({"model": "m", "messages": messages})


def _roles_and_text(request: ChatCompletionRequest) -> list[tuple[str, object]]:
    return [(m.role, m.content) for m in request.messages]


def test_no_system_message_puts_the_directive_first() -> None:
    out = inject_chat(_chat([{"role": "user", "content": "hi"}]), TEXT)
    assert _roles_and_text(out) == [("system", TEXT), ("user", "hi")]


def test_directive_goes_after_the_clients_leading_system_and_developer_messages() -> None:
    request = _chat([{"role": "system", "content": "You are kind."},
                     {"role": "developer", "content": "Use metric units."},
                     {"role": "user", "content": "hi"},
                     {"role": "assistant", "content": "hello"},
                     {"role": "system", "content": "later system turn"},
                     {"role": "user", "content": "and?"}])
    out = inject_chat(request, TEXT)
    assert [m.role for m in out.messages] == ["system", "developer", "system", "user",
                                              "assistant", "system", "user"]
    assert out.messages[2].content == TEXT
    assert out.messages[:2] == request.messages[:2]  # the shared prefix is untouched
    assert len(request.messages) == 6  # pure: the input is not modified


def test_multimodal_content_parts_and_extras_survive() -> None:
    request = _chat([{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}])
    out = inject_chat(request, TEXT)
    body = out.to_json_bytes()
    assert b'"image_url":{"url":"data:image/png;base64,AA"}' in body
    assert out.messages[0].content == TEXT


def test_completion_prompts() -> None:
    one = CompletionRequest.model_validate({"model": "m", "prompt": "Q: 2+2?"})
    assert inject_completion_text(one, TEXT).prompt == f"{TEXT}\n\nQ: 2+2?"
    many = CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"]})
    assert inject_completion_text(many, TEXT).prompt == [f"{TEXT}\n\na", f"{TEXT}\n\nb"]
    tokens = CompletionRequest.model_validate({"model": "m", "prompt": [1, 2, 3]})
    assert inject_completion(one) and inject_completion(many) and not inject_completion(tokens)


@pytest.mark.parametrize(("header", "policy", "default", "structured", "expected"), [
    (None, None, "auto", False, Choice("auto")),
    (None, None, "off", False, Choice("off")),
    (None, None, "L1", False, Choice("pinned", "L1")),
    ("off", None, "auto", False, Choice("off")),
    ("L2", None, "auto", False, Choice("pinned", "L2")),
    (" auto ", KeyPolicy(directive="off"), "auto", False, Choice("auto")),  # header wins
    (None, KeyPolicy(directive="off"), "auto", False, Choice("off")),  # key opt-out
    (None, KeyPolicy(directive="L1"), "auto", False, Choice("pinned", "L1")),
    (None, None, "auto", True, Choice("exempt")),  # tools / JSON output
    ("L2", None, "auto", True, Choice("pinned", "L2")),  # an explicit pin still applies
    (None, KeyPolicy(structured_output_directives=True), "auto", True, Choice("auto")),
])
def test_policy(header, policy, default, structured, expected) -> None:  # type: ignore[no-untyped-def]
    assert choose(CATALOGUE, header=header, key_policy=policy, default=default,
                  structured=structured) == expected


def test_unknown_header_value_is_a_400_naming_the_header() -> None:
    with pytest.raises(InvalidRequest) as caught:
        choose(CATALOGUE, header="L9", key_policy=None, default="auto", structured=False)
    assert caught.value.param == "X-Sprout-Directive" and "L0, L1, L2" in caught.value.message


def test_catalogue_validation_and_hashes() -> None:
    assert CATALOGUE.ids == ("L0", "L1", "L2") and CATALOGUE.baseline.text is None
    assert CATALOGUE.get("L1").text_sha256 is not None  # type: ignore[union-attr]
    custom = Catalogue([DirectiveLevel(id="none"), DirectiveLevel(id="terse", text="Be terse.")])
    assert custom.ids == ("none", "terse")
    with pytest.raises(ValueError, match="unique"):
        Catalogue([DirectiveLevel(id="a"), DirectiveLevel(id="a", text="x")])
    with pytest.raises(ValueError, match="no directive"):
        Catalogue([DirectiveLevel(id="a", text="x")])
