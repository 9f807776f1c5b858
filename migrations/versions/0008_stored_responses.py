"""stored responses (the Responses API's store and previous_response_id)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    op.create_table('stored_responses',
    sa.Column('response_id', sa.String(length=128), nullable=False),
    sa.Column('request_id', sa.String(length=64), nullable=False),
    sa.Column('api_key_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('pool', sa.String(length=128), nullable=True),
    sa.Column('native', sa.Boolean(), nullable=False),
    sa.Column('history_json', sa.Text(), nullable=False),
    sa.Column('input_json', sa.Text(), nullable=False),
    sa.Column('response_json', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('response_id', name=op.f('pk_stored_responses'))
    )
    with op.batch_alter_table('stored_responses', schema=None) as batch_op:
        batch_op.create_index('ix_stored_responses_expires_at', ['expires_at'], unique=False)


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table('stored_responses', schema=None) as batch_op:
        batch_op.drop_index('ix_stored_responses_expires_at')
    op.drop_table('stored_responses')
