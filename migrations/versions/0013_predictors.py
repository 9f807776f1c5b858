"""predictors: the learned-class predictor each evaluator run fits and publishes

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        'predictors',
        sa.Column('version', sa.String(length=64), nullable=False),
        sa.Column('fitted_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('evaluation_id', sa.String(length=64), nullable=True),
        sa.Column('levels', sa.String(length=256), nullable=False),
        sa.Column('verdicts', sa.Integer(), nullable=False),
        sa.Column('heldout_accuracy', sa.Float(), nullable=False),
        sa.Column('heldout_log_loss', sa.Float(), nullable=False),
        sa.Column('regex_accuracy', sa.Float(), nullable=False),
        sa.Column('model_json', sa.Text(), nullable=False),
        sa.Column('heldout_json', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('version', name=op.f('pk_predictors')),
    )
    op.create_index('ix_predictors_fitted_at', 'predictors', ['fitted_at'], unique=False)


def downgrade() -> None:
    """Revert."""
    op.drop_index('ix_predictors_fitted_at', table_name='predictors')
    op.drop_table('predictors')
