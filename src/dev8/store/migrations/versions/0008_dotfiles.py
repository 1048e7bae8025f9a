"""users: a dotfiles repository (and branch) installed into each new environment

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("dotfiles_url", sa.String(2048), nullable=True))
        batch.add_column(sa.Column("dotfiles_branch", sa.String(200), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+, PostgreSQL): a batch migration would re-create the
    # table on SQLite, and dropping the old one deletes, through ON DELETE CASCADE, every
    # row that refers to it.
    op.execute("ALTER TABLE users DROP COLUMN dotfiles_branch")
    op.execute("ALTER TABLE users DROP COLUMN dotfiles_url")
