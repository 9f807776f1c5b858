"""usage_hourly: hourly sums of the ledger, kept by triggers, for the optimiser

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 14:00:00.000000

PostgreSQL: statement-level triggers with transition tables, so a COPY of 500 rows costs one
grouped upsert, not 500. SQLite: row-level triggers. Only rows that count are summed (status
ok, with a task class and a directive level); an update moves a row's share only when a summed
value changed (settlement's measured joules, a status), so setting `settled_at` costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = 'hour, task_class, directive_level, is_evaluator'
SUMS = ('requests', 'offset_s', 'latency_ms', 'metered_j', 'unmetered_output_tokens')
COUNTS = "status = 'ok' AND task_class IS NOT NULL AND directive_level IS NOT NULL"
WATCHED = ('created_at', 'status', 'task_class', 'directive_level', 'is_evaluator',
           'latency_ms', 'energy_j', 'completion_tokens')
ON_CONFLICT = (f'ON CONFLICT ({KEY}) DO UPDATE SET '
               + ', '.join(f'{name} = usage_hourly.{name} + excluded.{name}' for name in SUMS))


def _pg_upsert(changed: str) -> str:
    """Add the signed rows of `changed` (sign, *requests columns) to their hours."""
    return f"""
    INSERT INTO usage_hourly ({KEY}, {', '.join(SUMS)})
    SELECT floor(e / 3600)::bigint, task_class, directive_level, is_evaluator, sum(sign),
           sum(sign * (e - floor(e / 3600) * 3600)), sum(sign * latency_ms),
           sum(sign * coalesce(energy_j, 0)),
           sum(sign * CASE WHEN energy_j IS NULL THEN coalesce(completion_tokens, 0) ELSE 0 END)
    FROM (SELECT extract(epoch FROM created_at)::float8 AS e, * FROM ({changed}) AS c) AS r
    WHERE {COUNTS}
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
    {ON_CONFLICT};"""


def _pg_function(name: str, changed: str) -> str:
    return (f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f"{_pg_upsert(changed)} RETURN NULL; END $$;")


_DIFFERS = ('(' + ', '.join(f'o.{c}' for c in WATCHED) + ') IS DISTINCT FROM ('
            + ', '.join(f'n.{c}' for c in WATCHED) + ')')
PG_CHANGES = {
    'insert': ('NEW TABLE AS new_rows', 'SELECT 1 AS sign, * FROM new_rows'),
    'update': ('OLD TABLE AS old_rows NEW TABLE AS new_rows',
               f'SELECT -1 AS sign, o.* FROM old_rows o JOIN new_rows n USING (request_id) '
               f'WHERE {_DIFFERS} UNION ALL SELECT 1 AS sign, n.* FROM new_rows n '
               f'JOIN old_rows o USING (request_id) WHERE {_DIFFERS}'),
    'delete': ('OLD TABLE AS old_rows', 'SELECT -1 AS sign, * FROM old_rows'),
}


def _sqlite_upsert(row: str, sign: int) -> str:
    """Add one row (`NEW` or `OLD`) with a sign; SQLite's CAST truncates (epochs are > 0)."""
    epoch = f'((julianday({row}.created_at) - 2440587.5) * 86400.0)'
    hour = f'CAST({epoch} / 3600 AS INTEGER)'
    counts = ' AND '.join(f'{row}.{part}' for part in COUNTS.split(' AND '))
    return (f"INSERT INTO usage_hourly ({KEY}, {', '.join(SUMS)}) "
            f"SELECT {hour}, {row}.task_class, {row}.directive_level, {row}.is_evaluator, "
            f"{sign}, {sign} * ({epoch} - {hour} * 3600), {sign} * {row}.latency_ms, "
            f"{sign} * coalesce({row}.energy_j, 0), {sign} * CASE WHEN {row}.energy_j IS NULL "
            f"THEN coalesce({row}.completion_tokens, 0) ELSE 0 END WHERE {counts} "
            f"{ON_CONFLICT};")


SQLITE_TRIGGERS = {
    'insert': ('AFTER INSERT', [_sqlite_upsert('NEW', 1)]),
    'update': (f"AFTER UPDATE OF {', '.join(WATCHED)}",
               [_sqlite_upsert('OLD', -1), _sqlite_upsert('NEW', 1)]),
    'delete': ('AFTER DELETE', [_sqlite_upsert('OLD', -1)]),
}


def upgrade() -> None:
    """Apply: the table, its triggers, and the sums of rows already in the ledger."""
    op.create_table(
        'usage_hourly',
        sa.Column('hour', sa.BigInteger(), nullable=False),
        sa.Column('task_class', sa.String(length=64), nullable=False),
        sa.Column('directive_level', sa.String(length=16), nullable=False),
        sa.Column('is_evaluator', sa.Boolean(), nullable=False),
        sa.Column('requests', sa.BigInteger(), nullable=False),
        sa.Column('offset_s', sa.Float(), nullable=False),
        sa.Column('latency_ms', sa.Float(), nullable=False),
        sa.Column('metered_j', sa.Float(), nullable=False),
        sa.Column('unmetered_output_tokens', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('hour', 'task_class', 'directive_level', 'is_evaluator',
                                name=op.f('pk_usage_hourly')),
    )
    if op.get_bind().dialect.name == 'postgresql':
        for op_name, (referencing, changed) in PG_CHANGES.items():
            op.execute(_pg_function(f'usage_hourly_{op_name}', changed))
            op.execute(f'CREATE TRIGGER requests_usage_hourly_{op_name} AFTER '
                       f'{op_name.upper()} ON requests REFERENCING {referencing} '
                       f'FOR EACH STATEMENT EXECUTE FUNCTION usage_hourly_{op_name}()')
        op.execute(_pg_upsert('SELECT 1 AS sign, * FROM requests').replace(
            ON_CONFLICT, '', 1))
    else:
        for op_name, (when, statements) in SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER requests_usage_hourly_{op_name} {when} ON requests "
                       f"BEGIN {' '.join(statements)} END")
        op.execute(f"INSERT INTO usage_hourly ({KEY}, {', '.join(SUMS)}) "
                   f"SELECT {KEY}, count(*), sum(offset_s), sum(latency_ms), sum(metered_j), "
                   f"sum(unmetered) FROM (SELECT CAST(e / 3600 AS INTEGER) AS hour, task_class,"
                   f" directive_level, is_evaluator, e - CAST(e / 3600 AS INTEGER) * 3600 AS "
                   f"offset_s, latency_ms, coalesce(energy_j, 0) AS metered_j, CASE WHEN "
                   f"energy_j IS NULL THEN coalesce(completion_tokens, 0) ELSE 0 END AS "
                   f"unmetered FROM (SELECT (julianday(created_at) - 2440587.5) * 86400.0 AS e, "
                   f"* FROM requests WHERE {COUNTS})) GROUP BY {KEY}")


def downgrade() -> None:
    """Revert."""
    if op.get_bind().dialect.name == 'postgresql':
        for op_name in PG_CHANGES:
            op.execute(f'DROP TRIGGER requests_usage_hourly_{op_name} ON requests')
            op.execute(f'DROP FUNCTION usage_hourly_{op_name}()')
    else:
        for op_name in SQLITE_TRIGGERS:
            op.execute(f'DROP TRIGGER requests_usage_hourly_{op_name}')
    op.drop_table('usage_hourly')
