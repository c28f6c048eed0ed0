"""Rows of jobs."""

from dataclasses import dataclass, fields
from datetime import datetime

from sqlalchemy import Integer, column, delete, insert, select, update, values
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.db.tables import jobs
from relay.db.types import UTCDateTime
from relay.errors import Conflict


@dataclass(frozen=True)
class Job:
    id: int
    owner_id: int
    name: str
    description: str
    schedule: str
    timezone: str
    command: str
    target: dict
    timeout_seconds: int
    retries: int
    retry_backoff_seconds: int
    concurrency: str
    catchup: str | dict
    enabled: bool
    env: dict
    next_fire_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @property
    def target_labels(self) -> list[str] | None:
        return self.target.get("labels")

    @property
    def fans_out(self) -> bool:
        return bool(self.target.get("all"))

    def public(self) -> dict:
        return {
            "id": self.id,
            "owner_id": self.owner_id,
            "name": self.name,
            "description": self.description,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "command": self.command,
            "target": self.target,
            "timeout_seconds": self.timeout_seconds,
            "retries": self.retries,
            "retry_backoff_seconds": self.retry_backoff_seconds,
            "concurrency": self.concurrency,
            "catchup": self.catchup,
            "enabled": self.enabled,
            "env": self.env,
            "next_fire_at": _iso(self.next_fire_at),
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


JOB_COLUMNS = tuple(jobs.c[field.name] for field in fields(Job))

# Fields a user sets; the rest belong to the relay.
EDITABLE = (
    "name",
    "description",
    "schedule",
    "timezone",
    "command",
    "target",
    "timeout_seconds",
    "retries",
    "retry_backoff_seconds",
    "concurrency",
    "catchup",
    "enabled",
    "env",
)


def _target_columns(target: dict) -> dict:
    labels = target.get("labels")
    return {
        "target_agent_id": target.get("agent"),
        "target_labels": "," + ",".join(labels) + "," if labels else None,
    }


async def create_job(
    connection: AsyncConnection,
    owner_id: int,
    values: dict,
    next_fire_at: datetime | None,
    now: datetime,
) -> Job:
    statement = (
        insert(jobs)
        .values(
            owner_id=owner_id,
            next_fire_at=next_fire_at,
            created_at=now,
            updated_at=now,
            **values,
            **_target_columns(values["target"]),
        )
        .returning(*JOB_COLUMNS)
    )
    try:
        row = (await connection.execute(statement)).one()
    except IntegrityError as exc:
        if not _is_unique_violation(exc):
            raise
        raise _name_taken(values["name"]) from None
    return Job(*row)


async def update_job(
    connection: AsyncConnection,
    job_id: int,
    changes: dict,
    next_fire_at: datetime | None,
    now: datetime,
) -> Job | None:
    """The changed job; None if it was deleted meanwhile."""
    extra = _target_columns(changes["target"]) if "target" in changes else {}
    statement = (
        update(jobs)
        .where(jobs.c.id == job_id)
        .values(next_fire_at=next_fire_at, updated_at=now, **changes, **extra)
        .returning(*JOB_COLUMNS)
    )
    try:
        row = (await connection.execute(statement)).one_or_none()
    except IntegrityError:
        raise _name_taken(changes["name"]) from None
    return None if row is None else Job(*row)


def _is_unique_violation(exc: IntegrityError) -> bool:
    # The owner's name key is the jobs table's only unique constraint; a
    # foreign key failure (an owner who no longer exists) is something else.
    return "unique" in str(exc.orig).lower()


def _name_taken(name: str) -> Conflict:
    return Conflict(f"You already have a job named {name!r}", code="job_name_taken")


async def get_job(connection: AsyncConnection, job_id: int) -> Job | None:
    statement = select(*JOB_COLUMNS).where(jobs.c.id == job_id)
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else Job(*row)


async def lock_job(connection: AsyncConnection, job_id: int) -> bool:
    """Hold the job's row until the transaction ends; False if it is gone."""
    statement = select(jobs.c.id).where(jobs.c.id == job_id).with_for_update()
    return await connection.scalar(statement) is not None


async def delete_job(connection: AsyncConnection, job_id: int) -> bool:
    """Delete a job and its runs; False when it was gone already."""
    result = await connection.execute(delete(jobs).where(jobs.c.id == job_id))
    return result.rowcount == 1


async def list_jobs(
    connection: AsyncConnection,
    owner_id: int | None,
    after_id: int,
    limit: int,
    enabled: bool | None = None,
    agent_id: int | None = None,
    label: str | None = None,
) -> list[Job]:
    """A page of jobs in id order; owner None means everyone's."""
    statement = select(*JOB_COLUMNS).where(jobs.c.id > after_id)
    if owner_id is not None:
        statement = statement.where(jobs.c.owner_id == owner_id)
    if enabled is not None:
        statement = statement.where(jobs.c.enabled == enabled)
    if agent_id is not None:
        statement = statement.where(jobs.c.target_agent_id == agent_id)
    if label is not None:
        # Escaped: "_" is a LIKE wildcard and may be part of a label.
        statement = statement.where(
            jobs.c.target_labels.contains(f",{label},", autoescape=True)
        )

    rows = await connection.execute(statement.order_by(jobs.c.id).limit(limit))
    return [Job(*row) for row in rows]


async def due_jobs(connection: AsyncConnection, now: datetime, limit: int) -> list[Job]:
    statement = (
        select(*JOB_COLUMNS)
        .where(jobs.c.next_fire_at <= now)
        .order_by(jobs.c.next_fire_at)
        .limit(limit)
    )
    return [Job(*row) for row in await connection.execute(statement)]


async def earliest_fire(connection: AsyncConnection) -> datetime | None:
    statement = select(jobs.c.next_fire_at).order_by(jobs.c.next_fire_at).limit(1)
    statement = statement.where(jobs.c.next_fire_at.is_not(None))
    return await connection.scalar(statement)


async def advance_job(
    connection: AsyncConnection,
    job_id: int,
    expected: datetime,
    next_fire_at: datetime | None,
) -> bool:
    """Move a job's next fire on, if no one else already has.

    This compare-and-set is what lets two schedulers share a database: only the
    one whose update matches the old fire time goes on to make its runs.
    """
    result = await connection.execute(
        update(jobs)
        .where(jobs.c.id == job_id, jobs.c.next_fire_at == expected)
        .values(next_fire_at=next_fire_at)
    )
    return result.rowcount == 1


async def advance_jobs(
    connection: AsyncConnection,
    moves: list[tuple[int, datetime, datetime | None]],
) -> set[int]:
    """Move many jobs' next fires on at once; return the ids this call moved.

    Each move is (job id, the next fire seen, the new next fire). A job whose
    next fire is no longer the one seen was moved by another scheduler, and is
    left out: that is the compare-and-set of advance_job, for a whole batch.
    """
    # A job stopped for good (no next fire) is rare: moved on its own, so the
    # batch's VALUES never holds a column of NULLs only, which PostgreSQL
    # cannot type.
    moved = {
        job_id
        for job_id, expected, next_at in moves
        if next_at is None and await advance_job(connection, job_id, expected, None)
    }
    moves = [move for move in moves if move[2] is not None]
    if not moves:
        return moved

    # A CTE, not FROM (VALUES ...) AS: SQLite cannot name a VALUES' columns.
    seen = (
        values(
            column("job_id", Integer),
            column("expected", UTCDateTime),
            column("next_at", UTCDateTime),
            name="moves",
        )
        .data(moves)
        .cte("moves")
    )
    statement = (
        update(jobs)
        .where(jobs.c.id == seen.c.job_id, jobs.c.next_fire_at == seen.c.expected)
        .values(next_fire_at=seen.c.next_at)
        .returning(jobs.c.id)
    )
    return moved | set((await connection.execute(statement)).scalars().all())


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
