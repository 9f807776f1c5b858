"""Stop sequences: where an answer ends, and how much of a stream is safe to show yet.

As in OpenAI's API the stop sequence itself is not part of the answer. A stream holds back
any tail that could still become a stop sequence, so no client ever sees text that a later
token turns into a stop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence


class StopWatch:
    """Watches one generation's text for its stop sequences."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stops: Sequence[str]) -> None:
        self._decode = decode
        self.stops = tuple(s for s in stops if s)
        self._cached: tuple[int, str] = (-1, "")

    def text(self, ids: Sequence[int]) -> str:
        """The decoded text of these ids (cached for the last length asked)."""
        if self._cached[0] != len(ids):
            self._cached = (len(ids), self._decode(ids))
        return self._cached[1]

    def hit(self, ids: Sequence[int]) -> bool:
        """Whether a stop sequence shows in the text so far."""
        return bool(self.stops) and _first_stop(self.text(ids), self.stops) is not None

    def cut(self, ids: Sequence[int]) -> str:
        """The text before the first stop sequence."""
        text = self.text(ids)
        at = _first_stop(text, self.stops)
        return text if at is None else text[:at]


def visible(text: str, stops: Sequence[str]) -> str:
    """The part of a growing answer that can be streamed now."""
    stops = [s for s in stops if s]
    if not stops:
        return text
    at = _first_stop(text, stops)
    if at is not None:
        return text[:at]
    held = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if text.endswith(stop[:size]):
                held = max(held, size)
                break
    return text[:len(text) - held]


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None
