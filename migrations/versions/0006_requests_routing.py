"""requests routing decision

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 09:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('route_policy', sa.String(length=96), nullable=True))
        batch_op.add_column(sa.Column('predicted_output_tokens', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('predicted_energy_j', sa.Float(), nullable=True))


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.drop_column('predicted_energy_j')
        batch_op.drop_column('predicted_output_tokens')
        batch_op.drop_column('route_policy')
