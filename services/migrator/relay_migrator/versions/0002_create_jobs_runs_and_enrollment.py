"""Create jobs, runs, run output and enrollment tokens

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _create_jobs()
    _create_runs()
    _create_run_output()
    _create_enrollment_tokens()


def _create_jobs() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "owner_id",
            sa.Integer,
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_jobs_owner_id"),
            nullable=False,
        ),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("schedule", sa.String(256), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("target", sa.JSON, nullable=False),
        sa.Column("target_agent_id", sa.Integer),
        sa.Column("target_labels", sa.String(2200)),
        sa.Column("timeout_seconds", sa.Integer, nullable=False),
        sa.Column("retries", sa.Integer, nullable=False),
        sa.Column("retry_backoff_seconds", sa.Integer, nullable=False),
        sa.Column("concurrency", sa.String(16), nullable=False),
        sa.Column("catchup", sa.JSON, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("env", sa.JSON, nullable=False),
        sa.Column("next_fire_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner_id", "name", name="uq_jobs_owner_id_name"),
        # Ids are never reused: a late report or link must not land on a newer row.
        sqlite_autoincrement=True,
    )
    op.create_index("ix_jobs_next_fire_at", "jobs", ["next_fire_at"])
    op.create_index("ix_jobs_target_agent_id", "jobs", ["target_agent_id"])


def _create_runs() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "job_id",
            sa.Integer,
            sa.ForeignKey("jobs.id", ondelete="CASCADE", name="fk_runs_job_id"),
            nullable=False,
        ),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("slot", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("first_run_id", sa.Integer),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("manual", sa.Boolean, nullable=False),
        sa.Column(
            "agent_id",
            sa.Integer,
            sa.ForeignKey("agents.id", ondelete="SET NULL", name="fk_runs_agent_id"),
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500)),
        sa.Column("command", sa.Text, nullable=False),
        sa.Column("env", sa.JSON, nullable=False),
        sa.Column("timeout_seconds", sa.Integer, nullable=False),
        sa.Column("lease_token", sa.String(64)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("exit_code", sa.Integer),
        sa.Column("signal", sa.Integer),
        sa.Column("output_bytes", sa.BigInteger, nullable=False),
        sa.Column("output_kept_bytes", sa.BigInteger, nullable=False),
        sa.Column("output_last_seq", sa.Integer),
        sa.UniqueConstraint(
            "job_id",
            "scheduled_for",
            "slot",
            "attempt",
            "manual",
            name="uq_runs_fire",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_runs_job_id_id", "runs", ["job_id", "id"])
    op.create_index("ix_runs_agent_id_status", "runs", ["agent_id", "status"])
    op.create_index("ix_runs_status_not_before", "runs", ["status", "not_before"])
    op.create_index("ix_runs_lease_expires_at", "runs", ["lease_expires_at"])
    op.create_index("ix_runs_created_at", "runs", ["created_at"])


def _create_run_output() -> None:
    op.create_table(
        "run_output",
        sa.Column(
            "run_id",
            sa.Integer,
            sa.ForeignKey("runs.id", ondelete="CASCADE", name="fk_run_output_run_id"),
            primary_key=True,
        ),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("part", sa.String(8), primary_key=True),
        sa.Column("stream", sa.String(8), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )


def _create_enrollment_tokens() -> None:
    op.create_table(
        "enrollment_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column(
            "created_by",
            sa.Integer,
            sa.ForeignKey(
                "users.id", ondelete="CASCADE", name="fk_enrollment_tokens_created_by"
            ),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("token_hash", name="uq_enrollment_tokens_token_hash"),
    )


def downgrade() -> None:
    op.drop_table("enrollment_tokens")
    op.drop_table("run_output")
    op.drop_table("runs")
    op.drop_table("jobs")
