"""QC reports: each SUCCESS export's report, stored with its task (spec §6)

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 19:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("export_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("qc_report", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_tasks", schema=None) as batch_op:
        batch_op.drop_column("qc_report")
