"""Judge prompt and verdict parsing; Wilson intervals and score rows."""

from __future__ import annotations

import pytest

from evaluator.judge import build_prompt, parse_choice
from evaluator.scores import score_rows, wilson


@pytest.mark.parametrize(("reply", "expected"), [
    ("Best: 2", 1), ("best:3", 2), ("The best answer is Answer 1.", 0), ("2", 1), ("(3)", 2),
    ("Best = #1", 0), ("I prefer Answer 3 because it is correct.", 2),
    ("Answer 1 is long, Answer 2 is right", None),  # two candidates: ambiguous
    ("Best: 7", None), ("none of them", None), ("", None), ("Best: 0", None),
])
def test_parse_choice(reply: str, expected: int | None) -> None:
    assert parse_choice(reply, 3) == expected


def test_prompt_numbers_answers_in_the_given_order_and_says_not_to_count_length() -> None:
    prompt = build_prompt("What is 2+2?", ["Four.", "It is 4, because 2+2=4."])
    assert "Answer 1:\n<<<\nFour.\n>>>" in prompt and "Answer 2:\n<<<\nIt is 4" in prompt
    assert "Do not consider length" in prompt and "What is 2+2?" in prompt


def test_wilson_interval() -> None:
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    assert wilson(10, 10)[1] == 1.0


def test_score_rows_per_class_and_overall() -> None:
    rows = score_rows("e1", ("L0", "L1", "L2"),
                      [("a", "L0"), ("a", "L2"), ("a", "L2"), ("b", "L1")])
    by = {(r["task_class"], r["level"]): r for r in rows}
    assert by[("a", "L2")]["q"] == pytest.approx(2 / 3) and by[("a", "L2")]["judged"] == 3
    assert by[("*", "L1")]["wins"] == 1 and by[("*", "L1")]["judged"] == 4
    assert by[("b", "L0")]["q"] == 0 and by[("b", "L0")]["q_low"] == 0
