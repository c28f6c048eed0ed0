"""The schema as SQLAlchemy Core tables.

Migrations in services/migrator make the schema; these definitions describe it to
queries and must match it (a test compares the two).
"""

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
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

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "owner_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    ),
    Column("name", String(128), nullable=False),
    Column("description", Text, nullable=False),
    Column("schedule", String(256), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("command", Text, nullable=False),
    Column("target", JSON, nullable=False),
    # Copies of the target for filtering: the agent id, and ",a,b," for labels.
    Column("target_agent_id", Integer, index=True),
    Column("target_labels", String(2200)),
    Column("timeout_seconds", Integer, nullable=False),
    Column("retries", Integer, nullable=False),
    Column("retry_backoff_seconds", Integer, nullable=False),
    Column("concurrency", String(16), nullable=False),
    Column("catchup", JSON, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("env", JSON, nullable=False),
    # The next fire not yet decided. Paused jobs keep one too, so that their
    # fires are recorded as skipped.
    Column("next_fire_at", UTCDateTime, index=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("owner_id", "name"),
    # Ids are never reused: a late report or link must not land on a newer row.
    sqlite_autoincrement=True,
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column(
        "job_id", Integer, ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
    ),
    Column("scheduled_for", UTCDateTime, nullable=False),
    # The agent id for a run on every matching agent, else 0: with the attempt it
    # makes each fire's runs unique, whichever scheduler inserts them.
    Column("slot", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("first_run_id", Integer),
    Column("trigger", String(16), nullable=False),
    # Fires by hand have a key of their own: one made at the very instant of a
    # scheduled fire must not stand in for it.
    Column("manual", Boolean, nullable=False),
    Column("agent_id", Integer, ForeignKey("agents.id", ondelete="SET NULL")),
    Column("status", String(16), nullable=False),
    Column("reason", String(500)),
    Column("command", Text, nullable=False),
    Column("env", JSON, nullable=False),
    Column("timeout_seconds", Integer, nullable=False),
    # Unique to one attempt on one agent; cleared when the relay takes the run
    # back, so that late reports from its old holder are refused.
    Column("lease_token", String(64)),
    Column("lease_expires_at", UTCDateTime),
    Column("cancel_requested", Boolean, nullable=False),
    Column("not_before", UTCDateTime, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("claimed_at", UTCDateTime),
    Column("started_at", UTCDateTime),
    Column("finished_at", UTCDateTime),
    Column("exit_code", Integer),
    Column("signal", Integer),
    Column("output_bytes", BigInteger, nullable=False),
    Column("output_kept_bytes", BigInteger, nullable=False),
    Column("output_last_seq", Integer),
    UniqueConstraint(
        "job_id", "scheduled_for", "slot", "attempt", "manual", name="uq_runs_fire"
    ),
    Index("ix_runs_job_id_id", "job_id", "id"),
    Index("ix_runs_agent_id_status", "agent_id", "status"),
    Index("ix_runs_status_not_before", "status", "not_before"),
    Index("ix_runs_lease_expires_at", "lease_expires_at"),
    Index("ix_runs_created_at", "created_at"),
    sqlite_autoincrement=True,
)

run_output = Table(
    "run_output",
    metadata,
    Column(
        "run_id", Integer, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("seq", Integer, primary_key=True),
    # "head" chunks are kept for good; "tail" chunks roll, oldest dropped first.
    # A chunk that crosses from head to tail is stored as one row of each.
    Column("part", String(8), primary_key=True),
    Column("stream", String(8), nullable=False),
    Column("size", Integer, nullable=False),
    Column("data", Text, nullable=False),
)

enrollment_tokens = Table(
    "enrollment_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column(
        "created_by",
        Integer,
        ForeignKey("users.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
)
