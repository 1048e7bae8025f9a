"""user_quotas: a user's own caps on environments, running ones, their CPUs and memory

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "user_quotas",
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("running", sa.Integer(), nullable=True),
        sa.Column("environments", sa.Integer(), nullable=True),
        sa.Column("cpus", sa.Float(), nullable=True),
        sa.Column("memory", sa.String(16), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("user_quotas")
