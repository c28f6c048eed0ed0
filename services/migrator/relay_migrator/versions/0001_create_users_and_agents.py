"""Create users and agents

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("username_key", sa.String(64), nullable=False),
        sa.Column("password_hash", sa.String(100), nullable=False),
        sa.Column("is_admin", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("username_key", name="uq_users_username_key"),
    )
    op.create_table(
        "agents",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("hostname", sa.String(253), nullable=False),
        sa.Column("hostname_key", sa.String(253), nullable=False),
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("token_hash", sa.String(64)),
        sa.Column(
            "created_by",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="SET NULL", name="fk_agents_created_by"),
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True)),
        sa.UniqueConstraint("hostname_key", name="uq_agents_hostname_key"),
        sa.UniqueConstraint("token_hash", name="uq_agents_token_hash"),
    )


def downgrade() -> None:
    op.drop_table("agents")
    op.drop_table("users")
