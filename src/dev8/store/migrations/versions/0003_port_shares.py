"""port sharing levels

Revision ID: 0003
Revises: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "port_shares",
        sa.Column("env_id", sa.String(32), sa.ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("port", sa.Integer(), primary_key=True),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("port_shares")
