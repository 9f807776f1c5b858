"""Allocation: the immutable table the request path draws a directive level from.

Per request the cost is one dict lookup and one uniform draw (`bisect` on a cumulative row).
The optimiser job builds a new Allocation and swaps it in atomically (`AllocationHolder`).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections.abc import Mapping

ALL_CLASSES = "*"  # a placement row for every class the table does not list


@dataclasses.dataclass(frozen=True, slots=True)
class Allocation:
    """Probabilities x[class][level]; `default` serves classes the table does not know."""

    levels: tuple[str, ...]
    rows: Mapping[str, tuple[float, ...]]
    default: tuple[float, ...]
    reason: str
    # The joint LP's placement: per class, per level, a probability per pool (in `pools`
    # order); class "*" serves classes it does not list. Empty when placement is the router's.
    pools: tuple[str, ...] = ()
    placement: Mapping[str, tuple[tuple[float, ...], ...]] = dataclasses.field(
        default_factory=dict)
    _cumulative: dict[str, tuple[float, ...]] = dataclasses.field(init=False, repr=False)
    _default_cumulative: tuple[float, ...] = dataclasses.field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name, row in [*self.rows.items(), ("default", self.default)]:
            if len(row) != len(self.levels) or min(row) < -1e-9 or abs(sum(row) - 1) > 1e-6:
                raise ValueError(f"allocation row {name!r} is not a distribution: {row}")
        object.__setattr__(self, "_cumulative",
                           {name: _cumulate(row) for name, row in self.rows.items()})
        object.__setattr__(self, "_default_cumulative", _cumulate(self.default))

    @classmethod
    def always(cls, levels: tuple[str, ...], level: str, reason: str) -> Allocation:
        """Every class at one level (the safe cold-start policy is the no-directive level)."""
        row = tuple(1.0 if name == level else 0.0 for name in levels)
        return cls(levels, {}, row, reason)

    @property
    def cold_start(self) -> bool:
        """Whether this is the safe cold-start policy (too few verdicts, or no solve yet)."""
        return "cold start" in self.reason  # every cold-start reason says so (optimiser/inputs)

    def draw(self, task_class: str, uniform: float) -> str:
        """The level for a request of `task_class`, given a uniform draw in [0, 1)."""
        cumulative = self._cumulative.get(task_class, self._default_cumulative)
        return self.levels[min(bisect.bisect_right(cumulative, uniform), len(self.levels) - 1)]

    def pool_weights(self, task_class: str | None,
                     level: str | None) -> tuple[tuple[str, ...], tuple[float, ...]] | None:
        """The pools and their probabilities for a (class, level), if the LP placed it."""
        rows = self.placement.get(task_class or ALL_CLASSES) or self.placement.get(ALL_CLASSES)
        if rows is None or level not in self.levels:
            return None
        weights = rows[self.levels.index(level)]
        total = sum(weights)
        if total <= 1e-9:  # the LP never serves this class at this level
            return None
        return self.pools, tuple(w / total for w in weights)

    def probabilities(self, task_class: str) -> tuple[float, ...]:
        """The row used for a class."""
        return self.rows.get(task_class, self.default)


def _cumulate(row: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(itertools.accumulate(row))


class AllocationHolder:
    """The published Allocation; replacing it is one reference assignment (atomic in CPython)."""

    def __init__(self, initial: Allocation) -> None:
        self.current = initial

    def publish(self, allocation: Allocation) -> None:
        """Swap in a new table; requests in flight keep the one they read."""
        self.current = allocation
