"""requests: a prefill phase's settlement flags, and the member pool that served a fallback

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 10:00:00.000000

Settlement now splits the prefill device's metered windows among the prefill phases that
overlapped them, over as many runs as the phase spans: like a row's own `settled_shared` and
`settled_estimated`, the phase keeps whether it shared a window and whether any of its windows
was synthesised. A disaggregated pool that falls back to one member pool records that pool
(`served_pool`): its profile, grid, PUE and embodied rate are the ones charged. Plain ADD
COLUMN (see 0011: a SQLite batch copy would drop 0010's triggers); none of these columns is
summed by the hourly rollups.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ('prefill_settled_shared', sa.Boolean()),
    ('prefill_settled_estimated', sa.Boolean()),
    ('served_pool', sa.String(length=128)),
)


def upgrade() -> None:
    """Apply."""
    for name, kind in COLUMNS:
        op.add_column('requests', sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    """Revert."""
    for name, _kind in reversed(COLUMNS):
        if op.get_context().dialect.name == 'sqlite':  # SQLite >= 3.35 drops in place
            op.execute(f'ALTER TABLE requests DROP COLUMN {name}')
        else:
            op.drop_column('requests', name)
