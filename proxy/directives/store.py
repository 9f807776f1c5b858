"""CatalogueStore: the catalogue in force, replaceable at run time and kept in the database.

Settings give the initial catalogue; an operator's `PUT /admin/directives` replaces it and
persists it (table `directive_catalogues`), so it survives restarts; other replicas adopt it at
their next optimiser tick (`reload`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import Engine, desc, insert, select

from proxy.accounting.tables import directive_catalogues
from proxy.directives.catalogue import Catalogue, DirectiveLevel


class CatalogueStore:
    """Readers take `current` (one attribute read); writers swap it whole."""

    def __init__(self, initial: Catalogue) -> None:
        self.current = initial

    def reload(self, engine: Engine) -> bool:
        """Adopt the newest persisted catalogue, if any; whether it changed (blocking)."""
        with engine.connect() as connection:
            stored = connection.execute(select(directive_catalogues.c.levels_json).order_by(
                desc(directive_catalogues.c.updated_at)).limit(1)).scalar()
        if stored is None:
            return False
        levels = [DirectiveLevel.model_validate(level) for level in json.loads(stored)]
        if [(d.level, d.text) for d in self.current.directives] == [
                (level.id, level.text) for level in levels]:
            return False
        self.current = Catalogue(levels)
        return True

    def replace(self, engine: Engine, levels: list[DirectiveLevel]) -> Catalogue:
        """Validate, persist and swap in a new catalogue (blocking)."""
        catalogue = Catalogue(levels)  # raises ValueError when invalid
        with engine.begin() as connection:
            connection.execute(insert(directive_catalogues).values(
                updated_at=datetime.now(UTC),
                levels_json=json.dumps([level.model_dump() for level in levels])))
        self.current = catalogue
        return catalogue
