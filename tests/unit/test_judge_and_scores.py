"""Judge prompt and verdict parsing; Wilson intervals and score rows."""

from __future__ import annotations

import pytest

from evaluator.generator import Answer, Generator
from evaluator.judge import Judge, build_prompt, choice_from_logprobs, parse_choice
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


def _logprobs_document(first: tuple[str, float], *rivals: tuple[str, float]) -> dict:
    def entry(token: str, logprob: float) -> dict:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode())}

    return {"choices": [{"message": {"content": first[0]}, "logprobs": {"content": [
        entry(*first) | {"top_logprobs": [entry(*r) for r in rivals]}]}}]}


def test_the_label_with_the_highest_logprob_wins_among_the_first_tokens() -> None:
    document = _logprobs_document(("1", -0.9), ("1", -0.9), (" 2", -0.6), ("Best", -2.0),
                                  ("4", -0.1))  # 4 is no label of 3 answers
    position, note = choice_from_logprobs(document, 3) or (None, "")
    assert position == 1 and note == "logprobs 1=-0.90 2=-0.60"
    # "1" and " 1" are one label: their probabilities add (0.35 + 0.35 > 0.5)
    split = _logprobs_document(("1", -1.05), (" 1", -1.05), ("2", -0.69))
    assert choice_from_logprobs(split, 2) == (0, "logprobs 1=-0.36 2=-0.69")
    assert choice_from_logprobs(_logprobs_document(("The", -0.1), ("Best", -1.0)), 3) is None
    assert choice_from_logprobs({"choices": [{"message": {"content": "2"},
                                              "logprobs": None}]}, 3) is None
    assert choice_from_logprobs(None, 3) is None


class _ScriptedGenerator(Generator):
    """Answers the judge's requests from a script (no model; the unit is the reading)."""

    def __init__(self, *replies: Answer) -> None:
        self.requests: list[dict] = []
        self._replies = list(replies)

    async def answer(self, endpoint: str, request: dict, level: str) -> Answer:
        self.requests.append(request)
        return self._replies.pop(0)


def test_auto_mode_reads_logprobs_and_falls_back_to_free_text() -> None:
    import asyncio

    labelled = _ScriptedGenerator(Answer("2", "r1", None, _logprobs_document(("2", -0.2))))
    verdict = asyncio.run(Judge(labelled, "judge").judge("Q?", ["a", "b"]))
    assert verdict.position == 1 and verdict.error is None
    assert labelled.requests[0]["max_tokens"] == 1 and labelled.requests[0]["logprobs"] is True
    assert "Reply with its number only (1, 2)" in labelled.requests[0]["messages"][0]["content"]

    hosted = _ScriptedGenerator(Answer("Best: 1", "r1", None, {"choices": [
        {"message": {"content": "Best"}, "logprobs": None}]}), Answer("Best: 1", "r2", None, {}))
    verdict = asyncio.run(Judge(hosted, "judge").judge("Q?", ["a", "b"]))
    assert verdict.position == 0 and len(hosted.requests) == 2
    assert "logprobs" not in hosted.requests[1]

    strict = _ScriptedGenerator(Answer("x", "r1", None, {"choices": [{"message": {}}]}))
    verdict = asyncio.run(Judge(strict, "judge", "logprobs").judge("Q?", ["a", "b"]))
    assert verdict.position is None and "log-probabilities" in (verdict.error or "")
    with pytest.raises(ValueError, match="judge mode"):
        Judge(strict, "judge", "vibes")
