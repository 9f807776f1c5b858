"""Stop sequences: the answer ends before them, and a stream never shows a stop's start."""

from __future__ import annotations

from worker.text import StopWatch, visible


def test_visible_holds_back_what_could_still_become_a_stop() -> None:
    assert visible("Hello wor", ["world"]) == "Hello "
    assert visible("Hello world and more", ["world"]) == "Hello "
    assert visible("Hello", []) == "Hello"
    assert visible("abc\n", ["\n\n", "END"]) == "abc"
    assert visible("abc E", ["\n\n", "END"]) == "abc "
    assert visible("abc X", ["\n\n", "END"]) == "abc X"


def test_stop_watch_cuts_at_the_first_stop_of_several() -> None:
    tokens = {1: "The ", 2: "sky ", 3: "is ", 4: "blue."}

    def decode(ids: list[int]) -> str:
        return "".join(tokens[i] for i in ids)

    watch = StopWatch(decode, ["blue", "is"])
    assert not watch.hit([1, 2])
    assert watch.hit([1, 2, 3]) and watch.cut([1, 2, 3, 4]) == "The sky "
    assert not StopWatch(decode, [""]).hit([1, 2, 3])  # empty stops are ignored
