"""ids never reused: AUTOINCREMENT for runs and api_keys on SQLite

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 14:00:00.000000

Without AUTOINCREMENT, SQLite gives a new row the highest id + 1: deleting the highest run hands
its id to the next run, of any workspace, and an old link or log line then names someone
else's run. AUTOINCREMENT needs the table rebuilt; rows keep their ids, and sqlite_sequence
starts at the current highest. PostgreSQL sequences never hand an id out twice: nothing to do.
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TABLES = ("runs", "api_keys")


def upgrade() -> None:
    _rebuild(autoincrement=True)


def downgrade() -> None:
    _rebuild(autoincrement=False)


def _rebuild(*, autoincrement: bool) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    # Dropping the old table would cascade to the rows that refer to it (run_files, export_tasks, ...):
    # foreign keys are off while the tables are swapped (the pragma only takes effect outside a transaction).
    with op.get_context().autocommit_block():
        op.execute("PRAGMA foreign_keys=OFF")
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass
        # The copy kept every id: the sequence starts at the highest one.
        op.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = :t").bindparams(t=table))
        if autoincrement:
            op.execute(
                sa.text(
                    "INSERT INTO sqlite_sequence (name, seq) SELECT :t, coalesce(max(id), 0) FROM " + table
                ).bindparams(t=table)
            )
    problems = bind.execute(sa.text("PRAGMA foreign_key_check")).fetchall()
    if problems:
        raise RuntimeError(f"rows refer to missing rows after the rebuild: {problems[:5]}")
    with op.get_context().autocommit_block():
        op.execute("PRAGMA foreign_keys=ON")
