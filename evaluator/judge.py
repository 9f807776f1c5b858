"""The judge: best-of-N on quality, accuracy and correctness, without considering length.

Sprout's design (Li et al., EMNLP 2024): the judge model sees the instruction and the answers
of every directive level in shuffled order and names the best one. A reply that cannot be read
is recorded as a failure, never guessed.
"""

from __future__ import annotations

import dataclasses
import re

from evaluator.generator import Generator

TEMPLATE = """You are comparing answers to the same instruction.
Pick the single best answer judged on quality, accuracy and correctness.
Do not consider length: a short answer that is correct and complete is as good as a long one.

Instruction:
<<<
{instruction}
>>>

{answers}
Reply with the number of the best answer only, in the form "Best: N"."""

_BEST = re.compile(r"\bbest\b\s*(?:answer)?\s*(?:is)?\s*[:=#-]?\s*(?:answer\s*)?#?\s*(\d+)",
                   re.IGNORECASE)
_ANSWER_N = re.compile(r"\banswer\s*#?\s*(\d+)\b", re.IGNORECASE)


def build_prompt(instruction: str, answers: list[str]) -> str:
    """The judge's prompt with answers numbered from 1 in the order given."""
    blocks = "".join(f"Answer {i}:\n<<<\n{text}\n>>>\n\n" for i, text in enumerate(answers, 1))
    return TEMPLATE.format(instruction=instruction, answers=blocks)


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

    def __init__(self, generator: Generator, model: str) -> None:
        self.model = model
        self._generator = generator

    async def judge(self, instruction: str, answers: list[str]) -> Judgement:
        """One verdict over answers in the order given."""
        request = {"model": self.model, "temperature": 0, "max_tokens": 20,
                   "messages": [{"role": "user", "content": build_prompt(instruction, answers)}]}
        reply = await self._generator.answer("chat", request, "off")
        if reply.text is None:
            return Judgement(None, None, f"judge call failed: {reply.error}")
        position = parse_choice(reply.text, len(answers))
        if position is None:
            return Judgement(None, reply.text, "unreadable verdict")
        return Judgement(position, reply.text, None)
