"""masters: the languages of an export's tracks, in order

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 16:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("export_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("language_ids", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_tasks", schema=None) as batch_op:
        batch_op.drop_column("language_ids")
