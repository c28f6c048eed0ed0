"""Rows of runs: made by fires, claimed by agents, ended by reports or sweeps.

Every change of a run's status is one conditional UPDATE naming the status
(and, for an agent's report, the lease token) it expects. Whoever's update
matches wins; everyone else sees zero rows and changes nothing. That is what
keeps a run from being claimed twice or ending both failed and succeeded.
"""

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.db.tables import agents, jobs, runs
from relay.schedule.fires import PlannedRun
from relay.store.jobs import Job

ACTIVE = ("pending", "claimed", "running")
HELD = ("claimed", "running")
FINAL = ("succeeded", "failed", "timed_out", "cancelled", "lost", "skipped")
RETRYABLE = ("failed", "timed_out", "lost")
# Retries wait the job's backoff, doubled for each attempt after the second,
# up to this many times the backoff.
MAX_BACKOFF_FACTOR = 64


@dataclass(frozen=True)
class Run:
    id: int
    job_id: int
    scheduled_for: datetime
    slot: int
    attempt: int
    first_run_id: int | None
    trigger: str
    manual: bool
    agent_id: int | None
    status: str
    reason: str | None
    command: str
    env: dict
    timeout_seconds: int
    lease_token: str | None
    lease_expires_at: datetime | None
    cancel_requested: bool
    not_before: datetime
    created_at: datetime
    claimed_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    signal: int | None
    output_bytes: int
    output_kept_bytes: int
    output_last_seq: int | None

    def public(self) -> dict:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "scheduled_for": self.scheduled_for.isoformat(),
            "trigger": self.trigger,
            "attempt": self.attempt,
            "first_run_id": self.first_run_id,
            "agent_id": self.agent_id,
            "status": self.status,
            "reason": self.reason,
            "cancel_requested": self.cancel_requested,
            "created_at": self.created_at.isoformat(),
            "not_before": self.not_before.isoformat(),
            "claimed_at": _iso(self.claimed_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "exit_code": self.exit_code,
            "signal": self.signal,
            "output_bytes": self.output_bytes,
            "output_truncated": self.output_kept_bytes < self.output_bytes,
        }

    def assignment(self, job_name: str, lease_seconds: int) -> dict:
        """What an agent is told when it claims this run."""
        return {
            "run_id": self.id,
            "job_id": self.job_id,
            "job_name": job_name,
            "attempt": self.attempt,
            "scheduled_for": self.scheduled_for.isoformat(),
            "command": self.command,
            "env": self.env,
            "timeout_seconds": self.timeout_seconds,
            "lease_token": self.lease_token,
            "lease_seconds": lease_seconds,
        }


RUN_COLUMNS = tuple(runs.c[name] for name in Run.__dataclass_fields__)


def _insert(connection: AsyncConnection):
    """INSERT that ignores a row whose fire key exists: the key decides races."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    return dialect.insert(runs).on_conflict_do_nothing(
        index_elements=["job_id", "scheduled_for", "slot", "attempt", "manual"]
    )


def _new_row(job: Job, now: datetime, **values) -> dict:
    return {
        "job_id": job.id,
        "command": job.command,
        "env": job.env,
        "timeout_seconds": job.timeout_seconds,
        "cancel_requested": False,
        "created_at": now,
        "not_before": now,
        "output_bytes": 0,
        "output_kept_bytes": 0,
        "first_run_id": None,
        "attempt": 1,
        "agent_id": None,
        "reason": None,
        "finished_at": None,
        **values,
    }


async def insert_planned(
    connection: AsyncConnection, planned: list[tuple[Job, PlannedRun]], now: datetime
) -> list[Run]:
    """Insert fires' runs in one statement; those made already are left out."""
    if not planned:
        return []

    rows = [_planned_row(job, run, now) for job, run in planned]
    statement = _insert(connection).returning(
        *RUN_COLUMNS, sort_by_parameter_order=True
    )
    result = await connection.execute(statement, rows)
    return [Run(*row) for row in result]


async def insert_fires(
    connection: AsyncConnection, planned: list[tuple[Job, PlannedRun]], now: datetime
) -> list[Run]:
    """insert_planned for a scheduler's batch: one executemany, then one read.

    RETURNING would make SQLite run the INSERT once per row; a batch of fires
    is hundreds of rows, so the runs made are read back in a single query.
    """
    if not planned:
        return []

    rows = [_planned_row(job, run, now) for job, run in planned]
    await connection.execute(_insert(connection), rows)
    job_ids = sorted({job.id for job, _ in planned})
    made = select(*RUN_COLUMNS).where(
        runs.c.job_id.in_(job_ids), runs.c.created_at == now
    )
    return [Run(*row) for row in await connection.execute(made)]


def _planned_row(job: Job, run: PlannedRun, now: datetime) -> dict:
    return _new_row(
        job,
        now,
        scheduled_for=run.scheduled_for,
        slot=run.slot,
        trigger=run.trigger,
        manual=run.trigger == "manual",
        agent_id=run.agent_id,
        status=run.status,
        reason=run.reason,
        finished_at=now if run.status != "pending" else None,
    )


async def active_runs_by_job(
    connection: AsyncConnection, job_ids: list[int]
) -> dict[int, list[int]]:
    """Ids of runs not yet ended, for each of these jobs."""
    if not job_ids:
        return {}

    statement = select(runs.c.job_id, runs.c.id).where(
        runs.c.job_id.in_(job_ids), runs.c.status.in_(ACTIVE), ~runs.c.cancel_requested
    )
    found: dict[int, list[int]] = {}
    for job_id, run_id in await connection.execute(statement):
        found.setdefault(job_id, []).append(run_id)
    return found


async def active_load(connection: AsyncConnection) -> dict[int, int]:
    """How many runs each agent holds or has waiting."""
    statement = (
        select(runs.c.agent_id, func.count())
        .where(runs.c.status.in_(ACTIVE), runs.c.agent_id.is_not(None))
        .group_by(runs.c.agent_id)
    )
    return dict((await connection.execute(statement)).all())


async def request_cancel(
    connection: AsyncConnection, run_ids: list[int], now: datetime, reason: str
) -> None:
    """Cancel runs: waiting ones at once, held ones when their agent reports."""
    if not run_ids:
        return

    await connection.execute(
        update(runs)
        .where(runs.c.id.in_(run_ids), runs.c.status == "pending")
        .values(status="cancelled", reason=reason, finished_at=now)
    )
    await connection.execute(
        update(runs)
        .where(runs.c.id.in_(run_ids), runs.c.status.in_(HELD))
        .values(cancel_requested=True, reason=reason)
    )


async def get_run(connection: AsyncConnection, run_id: int) -> Run | None:
    statement = select(*RUN_COLUMNS).where(runs.c.id == run_id)
    row = (await connection.execute(statement)).one_or_none()
    return None if row is None else Run(*row)


async def latest_runs(
    connection: AsyncConnection, job_ids: list[int]
) -> dict[int, Run]:
    """Each job's newest run, for the jobs that have one."""
    if not job_ids:
        return {}

    newest = (
        select(func.max(runs.c.id))
        .where(runs.c.job_id.in_(job_ids))
        .group_by(runs.c.job_id)
    )
    rows = await connection.execute(select(*RUN_COLUMNS).where(runs.c.id.in_(newest)))
    return {row.job_id: Run(*row) for row in rows}


async def list_runs(
    connection: AsyncConnection,
    owner_id: int | None,
    before_id: int | None,
    limit: int,
    job_id: int | None = None,
    status: str | None = None,
    agent_id: int | None = None,
) -> list[Run]:
    """A page of runs, newest first; owner None means everyone's."""
    statement = select(*RUN_COLUMNS)
    if owner_id is not None:
        owned = select(jobs.c.id).where(jobs.c.owner_id == owner_id)
        statement = statement.where(runs.c.job_id.in_(owned))
    if before_id is not None:
        statement = statement.where(runs.c.id < before_id)
    if job_id is not None:
        statement = statement.where(runs.c.job_id == job_id)
    if status is not None:
        statement = statement.where(runs.c.status == status)
    if agent_id is not None:
        statement = statement.where(runs.c.agent_id == agent_id)

    rows = await connection.execute(statement.order_by(runs.c.id.desc()).limit(limit))
    return [Run(*row) for row in rows]


# Claims ---------------------------------------------------------------------


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


# Reports --------------------------------------------------------------------


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


# Retries and sweeps -----------------------------------------------------------


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
        _insert(connection).values(values).returning(*RUN_COLUMNS)
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


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
