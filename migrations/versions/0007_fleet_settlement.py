"""fleet-wide settlement: device and times on requests, samples, windows, replicas, ci history

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('device_id', sa.String(length=256), nullable=True))
        batch_op.add_column(sa.Column('served_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('settled_j', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('settled_busy_s', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('settled_shared', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('settled_estimated', sa.Boolean(), nullable=True))
        batch_op.add_column(sa.Column('settled_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_requests_unsettled', ['device_id', 'served_at'], unique=False,
                              postgresql_where=sa.text('settled_at IS NULL'),
                              sqlite_where=sa.text('settled_at IS NULL'))
    op.create_table(
        'energy_samples',
        sa.Column('sample_id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('device_id', sa.String(length=256), nullable=False),
        sa.Column('sampled_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('energy_j', sa.Float(), nullable=False),
        sa.Column('meter', sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint('sample_id', name=op.f('pk_energy_samples')),
    )
    op.create_index('ix_energy_samples_device_id_sampled_at', 'energy_samples',
                    ['device_id', 'sampled_at'], unique=False)
    op.create_table(
        'energy_devices',
        sa.Column('device_id', sa.String(length=256), nullable=False),
        sa.Column('meter', sa.String(length=256), nullable=True),
        sa.Column('pools', sa.String(length=512), nullable=True),
        sa.Column('available', sa.Boolean(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('last_sample_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('settled_through', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('device_id', name=op.f('pk_energy_devices')),
    )
    op.create_table(
        'energy_windows',
        sa.Column('window_id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('device_id', sa.String(length=256), nullable=False),
        sa.Column('start_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('end_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('metered_j', sa.Float(), nullable=False),
        sa.Column('attributed_j', sa.Float(), nullable=False),
        sa.Column('idle_j', sa.Float(), nullable=False),
        sa.Column('rows', sa.Integer(), nullable=False),
        sa.Column('method', sa.String(length=32), nullable=False),
        sa.Column('settled_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('window_id', name=op.f('pk_energy_windows')),
    )
    op.create_index('ix_energy_windows_device_id_end_at', 'energy_windows',
                    ['device_id', 'end_at'], unique=False)
    op.create_index('ix_energy_windows_end_at', 'energy_windows', ['end_at'], unique=False)
    op.create_table(
        'replicas',
        sa.Column('replica_id', sa.String(length=64), nullable=False),
        sa.Column('host', sa.String(length=256), nullable=False),
        sa.Column('pid', sa.Integer(), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('in_flight_json', sa.Text(), nullable=False),
        sa.Column('pending_since', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('replica_id', name=op.f('pk_replicas')),
    )
    op.create_table(
        'ci_readings',
        sa.Column('reading_id', sa.Integer(), autoincrement=True, nullable=False),
        sa.Column('region', sa.String(length=64), nullable=False),
        sa.Column('read_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('g_per_kwh', sa.Float(), nullable=False),
        sa.Column('source', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('reading_id', name=op.f('pk_ci_readings')),
    )
    op.create_index('ix_ci_readings_region_read_at', 'ci_readings', ['region', 'read_at'],
                    unique=False)


def downgrade() -> None:
    """Revert."""
    op.drop_index('ix_ci_readings_region_read_at', table_name='ci_readings')
    op.drop_table('ci_readings')
    op.drop_table('replicas')
    op.drop_index('ix_energy_windows_end_at', table_name='energy_windows')
    op.drop_index('ix_energy_windows_device_id_end_at', table_name='energy_windows')
    op.drop_table('energy_windows')
    op.drop_table('energy_devices')
    op.drop_index('ix_energy_samples_device_id_sampled_at', table_name='energy_samples')
    op.drop_table('energy_samples')
    with op.batch_alter_table('requests', schema=None) as batch_op:
        batch_op.drop_index('ix_requests_unsettled')
        batch_op.drop_column('settled_at')
        batch_op.drop_column('settled_estimated')
        batch_op.drop_column('settled_shared')
        batch_op.drop_column('settled_busy_s')
        batch_op.drop_column('settled_j')
        batch_op.drop_column('ended_at')
        batch_op.drop_column('served_at')
        batch_op.drop_column('device_id')
