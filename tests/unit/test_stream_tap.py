"""SSETap: event boundaries, usage stripping, TTFT and finish detection."""

from __future__ import annotations

import itertools
import json

from hypothesis import given
from hypothesis import strategies as st

from proxy.serving.stream_tap import SSETap


def _event(document: dict | str) -> bytes:  # type: ignore[type-arg]
    payload = document if isinstance(document, str) else json.dumps(document)
    return f"data: {payload}\n\n".encode()


ROLE = _event({"choices": [{"index": 0, "delta": {"role": "assistant"}}], "usage": None})
TOKENS = [_event({"choices": [{"index": 0, "delta": {"content": w}}], "usage": None})
          for w in ["a", " b", " c"]]
FINISH = _event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
USAGE = _event({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 3,
                                         "total_tokens": 6}})
DONE = b"data: [DONE]\n\n"
STREAM = ROLE + b"".join(TOKENS) + FINISH + USAGE + DONE


def test_usage_chunk_is_removed_when_not_asked_and_recorded() -> None:
    tap = SSETap(client_wants_usage=False)
    out = tap.feed(STREAM) + tap.finish()
    assert out == ROLE + b"".join(TOKENS) + FINISH + DONE
    assert tap.usage is not None and tap.usage.completion_tokens == 3
    assert tap.finish_reason == "stop" and tap.saw_done and tap.token_events == 3


def test_usage_chunk_is_kept_when_asked() -> None:
    tap = SSETap(client_wants_usage=True)
    assert tap.feed(STREAM) + tap.finish() == STREAM


@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_output(cuts: list[int]) -> None:
    tap = SSETap(client_wants_usage=False)
    edges = [0, *sorted(set(cuts)), len(STREAM)]
    out = b"".join(tap.feed(STREAM[a:b]) for a, b in itertools.pairwise(edges))
    assert out + tap.finish() == ROLE + b"".join(TOKENS) + FINISH + DONE
    assert tap.token_events == 3


def test_ttft_is_the_first_token_not_the_role_chunk() -> None:
    tap = SSETap(client_wants_usage=False)
    tap.feed(ROLE)
    assert tap.first_token_at is None
    tap.feed(TOKENS[0])
    assert tap.first_token_at is not None


def test_crlf_events_comments_and_error_events() -> None:
    tap = SSETap(client_wants_usage=False)
    crlf = b'data: {"choices": [{"index": 0, "text": "x"}]}\r\n\r\n'
    comment = b": keep-alive\n\n"
    error = b'data: {"error": {"message": "boom"}}\n\n'
    assert tap.feed(crlf + comment + error) == crlf + comment + error
    assert tap.token_events == 1 and tap.error_payload is not None


def test_unterminated_last_event_is_flushed_with_a_blank_line() -> None:
    tap = SSETap(client_wants_usage=False)
    assert tap.feed(b"data: [DONE]") == b""
    assert tap.finish() == b"data: [DONE]\n\n" and tap.saw_done
