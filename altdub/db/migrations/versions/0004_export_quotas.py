"""export quotas

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 09:52:31.068039
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("export_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("minutes", sa.Float(), server_default="0", nullable=False))

    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quota_minutes", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("used_minutes", sa.Float(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("workspaces", schema=None) as batch_op:
        batch_op.drop_column("used_minutes")
        batch_op.drop_column("quota_minutes")

    with op.batch_alter_table("export_tasks", schema=None) as batch_op:
        batch_op.drop_column("minutes")
