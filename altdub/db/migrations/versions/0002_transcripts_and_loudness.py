"""transcripts and loudness

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 09:18:49.654675
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "transcripts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("language_id", sa.Integer(), nullable=False),
        sa.Column("original_name", sa.String(length=500), nullable=False),
        sa.Column("segments", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("transcripts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transcripts_run_id"), ["run_id"], unique=False)

    with op.batch_alter_table("export_tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("loudness", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_tasks", schema=None) as batch_op:
        batch_op.drop_column("loudness")

    with op.batch_alter_table("transcripts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transcripts_run_id"))

    op.drop_table("transcripts")
