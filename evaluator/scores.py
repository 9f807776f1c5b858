"""q(class, level) for one evaluation: win shares with counts and a 95% Wilson interval."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable
from typing import Any

ALL_CLASSES = "*"


def wilson(wins: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion (Wilson 1927)."""
    if total == 0:
        return 0.0, 1.0
    share = wins / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def score_rows(evaluation_id: str, levels: tuple[str, ...],
               verdicts: Iterable[tuple[str, str]]) -> list[dict[str, Any]]:
    """`quality_scores` rows from (task class, winning level) pairs, plus the all-class row."""
    wins: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for task_class, winner in verdicts:
        wins[task_class][winner] += 1
        wins[ALL_CLASSES][winner] += 1
    rows = []
    for task_class, counter in sorted(wins.items()):
        total = sum(counter.values())
        for level in levels:
            low, high = wilson(counter[level], total)
            rows.append({"evaluation_id": evaluation_id, "task_class": task_class,
                         "level": level, "wins": counter[level], "judged": total,
                         "q": counter[level] / total, "q_low": low, "q_high": high})
    return rows
