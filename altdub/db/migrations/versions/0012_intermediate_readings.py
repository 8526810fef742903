"""The meter's reading of each audio intermediate, taken as it is encoded and reused by every copy; the task
that claimed it (its re-run after a crash takes its own claim over)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 22:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audio_intermediates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reading", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=36), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audio_intermediates", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
        batch_op.drop_column("reading")
