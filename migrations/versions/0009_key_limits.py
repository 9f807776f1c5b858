"""key limits: per-key, per-minute, per-replica usage for fleet-wide limits and budgets

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        'key_usage',
        sa.Column('key_id', sa.String(length=64), nullable=False),
        sa.Column('minute_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('replica_id', sa.String(length=64), nullable=False),
        sa.Column('requests', sa.Integer(), nullable=False),
        sa.Column('tokens', sa.Integer(), nullable=False),
        sa.Column('g_co2e', sa.Float(), nullable=False),
        sa.Column('granted_requests', sa.Integer(), nullable=False),
        sa.Column('granted_tokens', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('key_id', 'minute_at', 'replica_id', name=op.f('pk_key_usage')),
    )
    op.create_index('ix_key_usage_minute_at', 'key_usage', ['minute_at'], unique=False)


def downgrade() -> None:
    """Revert."""
    op.drop_index('ix_key_usage_minute_at', table_name='key_usage')
    op.drop_table('key_usage')
