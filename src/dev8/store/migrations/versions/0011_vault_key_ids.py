"""secrets, environment_keys: key ids long enough for Azure Key Vault's key identifiers
(``https://VAULT.vault.azure.net/keys/NAME/VERSION``, where the local keyring's are 13 chars)

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = ("secrets", "environment_keys")


def upgrade() -> None:
    # SQLite does not enforce a VARCHAR's length, and a batch re-creation of these tables
    # would cascade to what refers to them (see 0008): only the others are altered.
    if op.get_bind().dialect.name == "sqlite":
        return
    for table in TABLES:
        op.alter_column(table, "key_id", type_=sa.String(255), existing_type=sa.String(32), existing_nullable=False)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table in TABLES:
        op.alter_column(table, "key_id", type_=sa.String(32), existing_type=sa.String(255), existing_nullable=False)
