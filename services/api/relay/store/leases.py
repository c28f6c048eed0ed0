"""Leases: runs handed to agents, and what their agents report about them.

Every report must carry the lease token of the run's current attempt; a
status changes only by a conditional UPDATE naming the status and the token
it expects, so a late or repeated report changes nothing.
"""

import secrets
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.db.tables import jobs, runs
from relay.store.recovery import retry_if_allowed
from relay.store.runs import FINAL, HELD, RUN_COLUMNS, Run, get_run


async def claim_runs(
    connection: AsyncConnection,
    agent_id: int,
    slots: int,
    now: datetime,
    lease_seconds: int,
) -> list[tuple[Run, str]]:
    """Hand this agent up to `slots` of its due runs, each with a new lease."""
    candidates = (
        select(runs.c.id)
        .where(
            runs.c.agent_id == agent_id,
            runs.c.status == "pending",
            runs.c.not_before <= now,
        )
        .order_by(runs.c.not_before, runs.c.id)
        .limit(slots)
    )
    if connection.dialect.name == "postgresql":
        # Another relay claiming for the same agent skips rows we hold.
        candidates = candidates.with_for_update(skip_locked=True)

    claimed = []
    for run_id in (await connection.execute(candidates)).scalars().all():
        run = await _claim_one(connection, run_id, agent_id, now, lease_seconds)
        if run is not None:
            claimed.append(run)
    return await _with_job_names(connection, claimed)


async def _claim_one(
    connection: AsyncConnection,
    run_id: int,
    agent_id: int,
    now: datetime,
    lease_seconds: int,
) -> Run | None:
    result = await connection.execute(
        update(runs)
        .where(
            runs.c.id == run_id, runs.c.status == "pending", runs.c.agent_id == agent_id
        )
        .values(
            status="claimed",
            claimed_at=now,
            lease_token="lt_" + secrets.token_urlsafe(24),
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
        .returning(*RUN_COLUMNS)
    )
    row = result.one_or_none()
    return None if row is None else Run(*row)


async def _with_job_names(
    connection: AsyncConnection, claimed: list[Run]
) -> list[tuple[Run, str]]:
    if not claimed:
        return []

    job_ids = {run.job_id for run in claimed}
    names = dict(
        (
            await connection.execute(
                select(jobs.c.id, jobs.c.name).where(jobs.c.id.in_(job_ids))
            )
        ).all()
    )
    return [(run, names.get(run.job_id, "")) for run in claimed]


async def agents_with_due_runs(
    connection: AsyncConnection, agent_ids: list[int], now: datetime
) -> set[int]:
    if not agent_ids:
        return set()

    statement = (
        select(runs.c.agent_id)
        .where(
            runs.c.status == "pending",
            runs.c.agent_id.in_(agent_ids),
            runs.c.not_before <= now,
        )
        .distinct()
    )
    return set((await connection.execute(statement)).scalars().all())


async def cancel_requested_among(
    connection: AsyncConnection, agent_id: int, run_ids: list[int]
) -> list[int]:
    """Which of the runs an agent says it holds have been cancelled."""
    if not run_ids:
        return []

    statement = select(runs.c.id).where(
        runs.c.id.in_(run_ids),
        runs.c.agent_id == agent_id,
        or_(runs.c.cancel_requested, runs.c.status.in_(("cancelled", "lost"))),
    )
    return sorted((await connection.execute(statement)).scalars().all())


class StaleLease(Exception):
    """The report's lease token is not the run's current one."""


class UnknownRun(Exception):
    """No such run, or not this agent's."""


def same_token(current: str | None, offered: str) -> bool:
    """Compare lease tokens in constant time; bytes, since any text may be offered."""
    if current is None:
        return False
    return secrets.compare_digest(current.encode(), offered.encode())


async def held_run(
    connection: AsyncConnection, run_id: int, agent_id: int, token: str
) -> Run:
    """The run, if this agent's token is its current lease; else an error."""
    run = await get_run(connection, run_id)
    if run is None or run.agent_id != agent_id:
        raise UnknownRun(run_id)
    if not same_token(run.lease_token, token):
        raise StaleLease(run_id)
    return run


async def start_run(
    connection: AsyncConnection,
    run_id: int,
    agent_id: int,
    token: str,
    now: datetime,
    lease_seconds: int,
) -> Run:
    run = await held_run(connection, run_id, agent_id, token)
    if run.status != "claimed":
        return run

    result = await connection.execute(
        update(runs)
        .where(
            runs.c.id == run_id, runs.c.lease_token == token, runs.c.status == "claimed"
        )
        .values(
            status="running",
            started_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )
        .returning(*RUN_COLUMNS)
    )
    row = result.one_or_none()
    return Run(*row) if row else await held_run(connection, run_id, agent_id, token)


async def renew_lease(
    connection: AsyncConnection,
    run_id: int,
    agent_id: int,
    token: str,
    now: datetime,
    lease_seconds: int,
) -> Run:
    run = await held_run(connection, run_id, agent_id, token)
    if run.status not in HELD:
        return run

    result = await connection.execute(
        update(runs)
        .where(
            runs.c.id == run_id, runs.c.lease_token == token, runs.c.status.in_(HELD)
        )
        .values(lease_expires_at=now + timedelta(seconds=lease_seconds))
        .returning(*RUN_COLUMNS)
    )
    row = result.one_or_none()
    return Run(*row) if row else await held_run(connection, run_id, agent_id, token)


def final_status(outcome: str, exit_code: int | None) -> str:
    if outcome == "exited":
        return "succeeded" if exit_code == 0 else "failed"
    if outcome in ("timed_out", "cancelled"):
        return outcome
    # The agent stopped before the command could finish (it was shut down):
    # lost, like a run whose agent vanished, so the job's retries apply.
    if outcome == "interrupted":
        return "lost"
    return "failed"


async def finish_run(
    connection: AsyncConnection,
    run_id: int,
    agent_id: int,
    token: str,
    now: datetime,
    report: dict,
) -> tuple[Run, Run | None]:
    """End a held run as its agent reports; returns it and any retry made."""
    run = await held_run(connection, run_id, agent_id, token)
    if run.status in FINAL:
        return run, None

    status = final_status(report["outcome"], report.get("exit_code"))
    result = await connection.execute(
        update(runs)
        .where(
            runs.c.id == run_id, runs.c.lease_token == token, runs.c.status.in_(HELD)
        )
        .values(
            status=status,
            finished_at=now,
            exit_code=report.get("exit_code"),
            signal=report.get("signal"),
            reason=report.get("error") or run.reason,
            lease_expires_at=None,
        )
        .returning(*RUN_COLUMNS)
    )
    row = result.one_or_none()
    if row is None:
        return await held_run(connection, run_id, agent_id, token), None

    ended = Run(*row)
    return ended, await retry_if_allowed(connection, ended, now)
