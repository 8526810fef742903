"""storage lifecycle: when an export was last used, when its file was removed; removed exports leave the live index

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 17:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

OLD_LIVE = sa.text("status IN ('PENDING', 'SUCCESS')")
NEW_LIVE = sa.text("status IN ('PENDING', 'SUCCESS') AND evicted_at IS NULL")


def upgrade() -> None:
    with op.batch_alter_table("export_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("evicted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_export_tasks_storage_key", ["storage_key"], unique=False)
    _live_index(drop=OLD_LIVE, create=NEW_LIVE)


def downgrade() -> None:
    _live_index(drop=NEW_LIVE, create=OLD_LIVE)
    with op.batch_alter_table("export_tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_export_tasks_storage_key")
        batch_op.drop_column("evicted_at")
        batch_op.drop_column("last_used_at")


def _live_index(*, drop: sa.TextClause, create: sa.TextClause) -> None:
    op.drop_index("uq_export_tasks_live_identity", table_name="export_tasks", sqlite_where=drop, postgresql_where=drop)
    op.create_index(
        "uq_export_tasks_live_identity",
        "export_tasks",
        ["identity"],
        unique=True,
        sqlite_where=create,
        postgresql_where=create,
    )
