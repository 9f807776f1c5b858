"""The judge: best-of-N on quality, accuracy and correctness, without considering length.

Sprout's design (Li et al., EMNLP 2024): the judge model sees the instruction and the answers
of every directive level in shuffled order and names the best one. Two ways to read its
choice:

- **log-probabilities** (a constrained choice): one token is generated with `logprobs` and
  `top_logprobs`, and the answer label ("1", "2", ...) with the highest log-probability wins.
  Small local models give a verdict this way every time, where their free text rarely parses.
- **free text**: the judge writes "Best: N", parsed strictly; for hosted judges that return
  no log-probabilities.

`auto` (the default) asks for log-probabilities and falls back to free text when the judge's
backend returns none. A reply that cannot be read is recorded as a failure, never guessed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

from evaluator.generator import Generator

_BODY = """You are comparing answers to the same instruction.
Pick the single best answer judged on quality, accuracy and correctness.
Do not consider length: a short answer that is correct and complete is as good as a long one.

Instruction:
<<<
{instruction}
>>>

{answers}
"""
TEMPLATE = _BODY + 'Reply with the number of the best answer only, in the form "Best: N".'
LABEL_TEMPLATE = _BODY + "Which answer is best? Reply with its number only ({labels})."

MODES = ("auto", "logprobs", "text")
TOP_LOGPROBS = 20  # the most OpenAI's API returns

_BEST = re.compile(r"\bbest\b\s*(?:answer)?\s*(?:is)?\s*[:=#-]?\s*(?:answer\s*)?#?\s*(\d+)",
                   re.IGNORECASE)
_ANSWER_N = re.compile(r"\banswer\s*#?\s*(\d+)\b", re.IGNORECASE)


def _blocks(answers: list[str]) -> str:
    return "".join(f"Answer {i}:\n<<<\n{text}\n>>>\n\n" for i, text in enumerate(answers, 1))


def build_prompt(instruction: str, answers: list[str]) -> str:
    """The free-text judge's prompt with answers numbered from 1 in the order given."""
    return TEMPLATE.format(instruction=instruction, answers=_blocks(answers))


def build_label_prompt(instruction: str, answers: list[str]) -> str:
    """The constrained-choice prompt: the reply's first token is an answer's number."""
    labels = ", ".join(str(i) for i in range(1, len(answers) + 1))
    return LABEL_TEMPLATE.format(instruction=instruction, answers=_blocks(answers),
                                 labels=labels)


def choice_from_logprobs(document: dict[str, Any] | None, count: int) -> tuple[int, str] | None:
    """The 0-based position whose label is likeliest as the first token, and a note.

    The note lists the labels' log-probabilities. None when the response carries no
    log-probabilities, or no label among them.
    """
    try:
        first = document["choices"][0]["logprobs"]["content"][0]  # type: ignore[index]
        candidates = [(first["token"], first["logprob"])] + [
            (item["token"], item["logprob"]) for item in first.get("top_logprobs") or []]
    except (KeyError, IndexError, TypeError):
        return None
    labels: dict[int, float] = {}  # a label's tokens ("2", " 2") add up: log-sum-exp
    seen: set[str] = set()
    for token, logprob in candidates:
        label = str(token).strip()
        if (str(token) in seen or not label.isdigit() or not 1 <= int(label) <= count
                or not isinstance(logprob, int | float)):
            continue
        seen.add(str(token))
        known = labels.get(int(label))
        labels[int(label)] = float(logprob) if known is None else max(known, logprob) + \
            math.log1p(math.exp(-abs(known - logprob)))
    if not labels:
        return None
    best = max(labels, key=lambda label: labels[label])
    note = "logprobs " + " ".join(f"{k}={v:.2f}" for k, v in sorted(labels.items()))
    return best - 1, note


def parse_choice(reply: str, count: int) -> int | None:
    """The 0-based position the judge chose, or None if the reply is ambiguous or invalid."""
    text = reply.strip()
    candidates: list[int] = []
    match = _BEST.search(text)
    if match:
        candidates = [int(match.group(1))]
    elif re.fullmatch(r"\(?#?\s*(\d+)\s*\)?\.?", text):
        candidates = [int(re.sub(r"\D", "", text))]
    else:
        candidates = sorted({int(n) for n in _ANSWER_N.findall(text)})
        if len(candidates) != 1:
            return None
    choice = candidates[0]
    return choice - 1 if 1 <= choice <= count else None


@dataclasses.dataclass(frozen=True, slots=True)
class Judgement:
    """The judge's choice (0-based position) or the failure."""

    position: int | None
    reply: str | None
    error: str | None


class Judge:
    """Asks a judge model through the proxy (no directive on the judge itself)."""

    def __init__(self, generator: Generator, model: str, mode: str = "auto") -> None:
        if mode not in MODES:
            raise ValueError(f"judge mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.model = model
        self.mode = mode
        self._generator = generator

    async def judge(self, instruction: str, answers: list[str]) -> Judgement:
        """One verdict over answers in the order given."""
        if self.mode == "text":
            return await self._by_text(instruction, answers)
        verdict = await self._by_logprobs(instruction, answers)
        if verdict.position is not None or self.mode == "logprobs":
            return verdict
        fallback = await self._by_text(instruction, answers)
        if fallback.position is None:
            return Judgement(None, fallback.reply, f"{verdict.error}; then {fallback.error}")
        return fallback

    async def _by_logprobs(self, instruction: str, answers: list[str]) -> Judgement:
        request = {"model": self.model, "temperature": 0, "max_tokens": 1, "logprobs": True,
                   "top_logprobs": TOP_LOGPROBS,
                   "messages": [{"role": "user",
                                 "content": build_label_prompt(instruction, answers)}]}
        reply = await self._generator.answer("chat", request, "off")
        if reply.text is None:
            return Judgement(None, None, f"judge call failed: {reply.error}")
        found = choice_from_logprobs(reply.document, len(answers))
        if found is None:
            return Judgement(None, reply.text, "no answer label among the judge's "
                                               "log-probabilities")
        return Judgement(found[0], found[1], None)

    async def _by_text(self, instruction: str, answers: list[str]) -> Judgement:
        request = {"model": self.model, "temperature": 0, "max_tokens": 20,
                   "messages": [{"role": "user", "content": build_prompt(instruction, answers)}]}
        reply = await self._generator.answer("chat", request, "off")
        if reply.text is None:
            return Judgement(None, None, f"judge call failed: {reply.error}")
        position = parse_choice(reply.text, len(answers))
        if position is None:
            return Judgement(None, reply.text, "unreadable verdict")
        return Judgement(position, reply.text, None)
