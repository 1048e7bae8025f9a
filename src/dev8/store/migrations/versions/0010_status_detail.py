"""environments: the raw detail behind a failure's sentence (the runtime's own words)

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("status_detail", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    # Plain DROP COLUMN: see 0008 (a batch re-creation would cascade-delete events and keys).
    op.execute("ALTER TABLE environments DROP COLUMN status_detail")
