"""replicas, env_leases, app_grants, login_failures, gateway_keys and image_jobs: several dev8
servers on one database (core.leases, server.apps.sessions, core.throttle, server.gatewaykey,
core.image_jobs)

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False, server_default=""),
        sa.Column("pid", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("http_addr", sa.String(255), nullable=False, server_default=""),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "env_leases",
        sa.Column("env_id", sa.String(32), sa.ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("replica", sa.String(64), nullable=False, index=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "app_grants",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("minted_by", sa.String(64), nullable=False, index=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
    )
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(300), nullable=False, index=True),
        sa.Column("at", sa.Float(), nullable=False, index=True),
    )
    op.create_table(
        "gateway_keys",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("key_id", sa.String(255), nullable=False, index=True),
        sa.Column("wrapped_key", sa.LargeBinary(), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "image_jobs",
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("image", sa.String(255), nullable=False),
        sa.Column("replica", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("progress", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_table("image_jobs")
    op.drop_table("gateway_keys")
    op.drop_table("login_failures")
    op.drop_table("app_grants")
    op.drop_table("env_leases")
    op.drop_table("replicas")
