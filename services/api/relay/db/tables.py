"""The schema as SQLAlchemy Core tables.

Migrations in services/migrator make the schema; these definitions describe it to
queries and must match it (a test compares the two).
"""

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
)

from relay.db.types import UTCDateTime

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("username", String(64), nullable=False),
    # Lower-cased username: uniqueness regardless of case, enforced by the database.
    Column("username_key", String(64), nullable=False, unique=True),
    Column("password_hash", String(100), nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
)

agents = Table(
    "agents",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("hostname", String(253), nullable=False),
    Column("hostname_key", String(253), nullable=False, unique=True),
    Column("ip", String(45), nullable=False),
    Column("labels", JSON, nullable=False),
    # SHA-256 of the agent's token; the token itself is shown once and never kept.
    Column("token_hash", String(64), unique=True),
    Column("created_by", Integer, ForeignKey("users.id", ondelete="SET NULL")),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("last_seen_at", UTCDateTime),
)
