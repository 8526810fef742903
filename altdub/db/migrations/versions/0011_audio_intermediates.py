"""audio intermediates: a dub's encoded audio, made once and stream-copied into every deliverable (issue 17)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 19:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audio_intermediates",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("storage_key", sa.String(length=500), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ready_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["workspace_id"], ["workspaces.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audio_intermediates_run_id", "audio_intermediates", ["run_id"], unique=False)
    op.create_index("ix_audio_intermediates_workspace_id", "audio_intermediates", ["workspace_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audio_intermediates_workspace_id", table_name="audio_intermediates")
    op.drop_index("ix_audio_intermediates_run_id", table_name="audio_intermediates")
    op.drop_table("audio_intermediates")
