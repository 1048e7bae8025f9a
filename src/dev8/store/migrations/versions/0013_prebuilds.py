"""prebuild_configs, prebuild_hook_keys, prebuilds and environments.prebuild_id: homes made
ahead of time (core.prebuilds)

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prebuild_configs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("repo_url", sa.String(2048), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("image", sa.String(255), nullable=False),
        sa.Column("cpus", sa.Float(), nullable=False),
        sa.Column("memory", sa.String(16), nullable=False),
        sa.Column("secret_names", sa.JSON(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("keep", sa.Integer(), nullable=False),
        sa.Column("every", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner_id", "repo_url", "branch"),
    )
    op.create_table(
        "prebuild_hook_keys",
        sa.Column("config_id", sa.String(32), sa.ForeignKey("prebuild_configs.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("key_id", sa.String(255), nullable=False, index=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "prebuilds",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("config_id", sa.String(32), sa.ForeignKey("prebuild_configs.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("env_id", sa.String(32), nullable=False),
        sa.Column("env_name", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("commit", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("prebuild_id", sa.String(32), nullable=True))
        batch.create_index("ix_environments_prebuild_id", ["prebuild_id"])


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.drop_index("ix_environments_prebuild_id")
        batch.drop_column("prebuild_id")
    op.drop_table("prebuilds")
    op.drop_table("prebuild_hook_keys")
    op.drop_table("prebuild_configs")
