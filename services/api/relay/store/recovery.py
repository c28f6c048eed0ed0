"""Recovery: retries of failed runs, and runs taken back from silent agents."""

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.db.tables import agents, jobs, runs
from relay.store.runs import (
    ACTIVE,
    HELD,
    MAX_BACKOFF_FACTOR,
    RETRYABLE,
    RUN_COLUMNS,
    Run,
    insert_once,
)


async def retry_if_allowed(
    connection: AsyncConnection, ended: Run, now: datetime, agent_id: int | None = None
) -> Run | None:
    """Queue the next attempt of a failed, timed out or lost run, if any remain."""
    if ended.status not in RETRYABLE or ended.cancel_requested:
        return None

    job = await connection.execute(
        select(
            jobs.c.retries, jobs.c.retry_backoff_seconds, jobs.c.target, jobs.c.enabled
        ).where(jobs.c.id == ended.job_id)
    )
    row = job.one_or_none()
    if row is None or ended.attempt > row.retries:
        return None

    factor = min(2 ** (ended.attempt - 1), MAX_BACKOFF_FACTOR)
    # A run for "any agent with these labels" is given an agent when it is due,
    # by the scheduler, so the retry can go to whichever agent is free then.
    any_agent = "labels" in row.target and not row.target.get("all")
    if any_agent:
        agent_id = None
    elif agent_id is None:
        agent_id = ended.agent_id
    values = {
        "job_id": ended.job_id,
        "scheduled_for": ended.scheduled_for,
        "slot": ended.slot,
        "attempt": ended.attempt + 1,
        "first_run_id": ended.first_run_id or ended.id,
        "trigger": "retry",
        "manual": ended.manual,
        "agent_id": agent_id,
        "status": "pending",
        "reason": None,
        "command": ended.command,
        "env": ended.env,
        "timeout_seconds": ended.timeout_seconds,
        "cancel_requested": False,
        "not_before": now + timedelta(seconds=row.retry_backoff_seconds * factor),
        "created_at": now,
        "output_bytes": 0,
        "output_kept_bytes": 0,
    }
    result = await connection.execute(
        insert_once(connection).values(values).returning(*RUN_COLUMNS)
    )
    inserted = result.one_or_none()
    return None if inserted is None else Run(*inserted)


async def expired_leases(connection: AsyncConnection, now: datetime) -> list[Run]:
    statement = select(*RUN_COLUMNS).where(
        runs.c.status.in_(HELD), runs.c.lease_expires_at < now
    )
    return [Run(*row) for row in await connection.execute(statement)]


async def held_by_offline_agents(
    connection: AsyncConnection, seen_before: datetime
) -> list[Run]:
    offline = select(agents.c.id).where(
        or_(agents.c.last_seen_at.is_(None), agents.c.last_seen_at < seen_before)
    )
    statement = select(*RUN_COLUMNS).where(
        runs.c.status.in_(ACTIVE), runs.c.agent_id.in_(offline)
    )
    return [Run(*row) for row in await connection.execute(statement)]


async def declare_lost(
    connection: AsyncConnection, run: Run, now: datetime, reason: str
) -> bool:
    """Take a held run back from its agent; its lease token stops working."""
    result = await connection.execute(
        update(runs)
        .where(
            runs.c.id == run.id,
            runs.c.status.in_(HELD),
            runs.c.lease_token == run.lease_token,
        )
        .values(
            status="lost",
            reason=reason,
            finished_at=now,
            lease_token=None,
            lease_expires_at=None,
        )
    )
    return result.rowcount == 1


async def reassign_pending(
    connection: AsyncConnection,
    run: Run,
    agent_id: int | None,
    now: datetime,
    reason: str,
) -> bool:
    """Move a waiting run to another agent, or skip it when there is none."""
    condition = and_(runs.c.id == run.id, runs.c.status == "pending")
    if agent_id is None:
        values = {"status": "skipped", "reason": reason, "finished_at": now}
    else:
        values = {"agent_id": agent_id}
    result = await connection.execute(update(runs).where(condition).values(**values))
    return result.rowcount == 1


async def unassign(connection: AsyncConnection, run: Run) -> None:
    """Free a waiting run from an agent that went offline before claiming it."""
    await connection.execute(
        update(runs)
        .where(runs.c.id == run.id, runs.c.status == "pending")
        .values(agent_id=None)
    )


async def unassigned_due(
    connection: AsyncConnection, now: datetime
) -> list[tuple[Run, dict]]:
    """Due waiting runs with no agent, each with its job's target."""
    statement = (
        select(*RUN_COLUMNS, jobs.c.target)
        .join(jobs, jobs.c.id == runs.c.job_id)
        .where(
            runs.c.status == "pending",
            runs.c.not_before <= now,
            runs.c.agent_id.is_(None),
        )
        .order_by(runs.c.not_before, runs.c.id)
    )
    rows = await connection.execute(statement)
    return [(Run(*row[:-1]), row[-1]) for row in rows]
