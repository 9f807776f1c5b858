"""requests: a disaggregated request's prefill phase (device, end, KV bytes, footprint)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 16:00:00.000000

Prefill on one pool's device, decode on another's (a `disaggregated` pool): the row keeps the
decode device in `device_id` and records the prefill device, when the prefill ended, the KV
cache bytes moved, and the prefill phase's own energy and carbon (part of the row's totals),
which settlement replaces with that device's metered share. None of these columns is summed by
the hourly rollups (0010), so no trigger changes.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ('prefill_pool', sa.String(length=128)),
    ('prefill_device_id', sa.String(length=256)),
    ('prefill_backend_url', sa.String(length=512)),
    ('prefill_ended_at', sa.DateTime(timezone=True)),
    ('kv_transfer_bytes', sa.BigInteger()),
    ('prefill_energy_j', sa.Float()),
    ('prefill_operational_g_co2e', sa.Float()),
    ('prefill_embodied_g_co2e', sa.Float()),
    ('prefill_energy_method', sa.String(length=32)),
    ('prefill_settled_j', sa.Float()),
    ('prefill_settled_busy_s', sa.Float()),
)
UNSETTLED = "prefill_energy_method = 'provisional'"


# Plain ADD / DROP COLUMN, never batch mode: on SQLite a batch copies the table, which would
# drop 0010's rollup triggers with it.


def upgrade() -> None:
    """Apply."""
    for name, kind in COLUMNS:
        op.add_column('requests', sa.Column(name, kind, nullable=True))
    op.create_index('ix_requests_prefill_unsettled', 'requests',
                    ['prefill_device_id', 'served_at'], unique=False,
                    postgresql_where=sa.text(UNSETTLED), sqlite_where=sa.text(UNSETTLED))


def downgrade() -> None:
    """Revert."""
    op.drop_index('ix_requests_prefill_unsettled', table_name='requests',
                  postgresql_where=sa.text(UNSETTLED), sqlite_where=sa.text(UNSETTLED))
    for name, _kind in reversed(COLUMNS):
        if op.get_context().dialect.name == 'sqlite':  # SQLite >= 3.35 drops in place
            op.execute(f'ALTER TABLE requests DROP COLUMN {name}')
        else:
            op.drop_column('requests', name)
