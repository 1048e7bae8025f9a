"""environments: their own idle timeout (seconds; NULL: the server's default, 0: never)
and why dev8 last stopped them by itself (idle, session limit)

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("idle_timeout", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("stop_reason", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL): a batch migration would re-create the
    # table on SQLite, and dropping the old one deletes, through ON DELETE CASCADE, every
    # row that refers to it.
    op.execute("ALTER TABLE environments DROP COLUMN stop_reason")
    op.execute("ALTER TABLE environments DROP COLUMN idle_timeout")
