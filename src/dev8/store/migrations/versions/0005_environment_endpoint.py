"""environments: where an environment is reached (host, port), its pinned SSH host key,
the instance id that replaces container_id, and the runtime's opaque state

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.add_column(sa.Column("ssh_host", sa.String(255), nullable=True))
        batch.add_column(sa.Column("host_key", sa.Text(), nullable=True))
        batch.add_column(sa.Column("runtime_state", sa.JSON(), nullable=True))
        batch.alter_column("container_id", new_column_name="instance_id", existing_type=sa.String(80),
                           type_=sa.String(200), existing_nullable=True)
    # Environments running before this revision were Docker containers on loopback; their
    # instance id (container id alone) no longer matches what the runtime reports, so the
    # reconciler configures each once more and pins its host key.
    op.execute("UPDATE environments SET ssh_host = '127.0.0.1' WHERE ssh_port IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("environments") as batch:
        batch.alter_column("instance_id", new_column_name="container_id", existing_type=sa.String(200),
                           type_=sa.String(80), existing_nullable=True)
        batch.drop_column("runtime_state")
        batch.drop_column("host_key")
        batch.drop_column("ssh_host")
