"""The directive catalogue: level ids and the system instruction each one adds."""

from __future__ import annotations

import dataclasses
import hashlib

from pydantic import BaseModel, Field


class DirectiveLevel(BaseModel):
    """One level as operators configure it; `text` None means "no directive" (L0)."""

    id: str = Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9_-]+$")
    text: str | None = None


# Sprout (Li et al., EMNLP 2024), section 3: L0 = no directive, L1 and L2 add these system turns.
DEFAULT_LEVELS = [
    DirectiveLevel(id="L0", text=None),
    DirectiveLevel(id="L1", text="Always answer briefly"),
    DirectiveLevel(id="L2", text="Always answer very briefly"),
]


@dataclasses.dataclass(frozen=True, slots=True)
class Directive:
    """A resolved level with the hash stored in the ledger (so text edits stay traceable)."""

    level: str
    text: str | None
    text_sha256: str | None


class Catalogue:
    """Levels in order from the longest answers (index 0, no directive) to the shortest."""

    def __init__(self, levels: list[DirectiveLevel]) -> None:
        if not levels:
            raise ValueError("the directive catalogue needs at least one level")
        ids = [level.id for level in levels]
        if len(set(ids)) != len(ids):
            raise ValueError(f"directive level ids must be unique: {ids}")
        if levels[0].text is not None:
            raise ValueError(f"the first level ({ids[0]}) must be 'no directive' (text null)")
        self.directives = tuple(
            Directive(level.id, level.text,
                      hashlib.sha256(level.text.encode()).hexdigest() if level.text else None)
            for level in levels
        )
        self._by_id = {directive.level: directive for directive in self.directives}

    @property
    def ids(self) -> tuple[str, ...]:
        """Level ids in catalogue order."""
        return tuple(directive.level for directive in self.directives)

    @property
    def baseline(self) -> Directive:
        """The no-directive level (quality reference of the optimiser)."""
        return self.directives[0]

    def get(self, level: str) -> Directive | None:
        """The directive of a level id, or None."""
        return self._by_id.get(level)
