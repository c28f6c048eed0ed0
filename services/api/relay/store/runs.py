"""Rows of runs: made by fires, listed, cancelled.

A run's later life is in leases.py (claims and agents' reports) and
recovery.py (retries, runs taken back). Every change of a run's status, there
and here, is one conditional UPDATE naming the status (and, for an agent's
report, the lease token) it expects. Whoever's update matches wins; everyone
else sees zero rows and changes nothing. That is what keeps a run from being
claimed twice or ending both failed and succeeded.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.db.tables import jobs, runs
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


def insert_once(connection: AsyncConnection):
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


async def insert_fires(
    connection: AsyncConnection, planned: list[tuple[Job, PlannedRun]], now: datetime
) -> list[Run]:
    """Insert fires' runs; those another scheduler made already are left out.

    One executemany, then one read of the runs made: RETURNING would make
    SQLite run the INSERT once per row, and a batch is hundreds of rows.
    """
    if not planned:
        return []

    rows = [_planned_row(job, run, now) for job, run in planned]
    await connection.execute(insert_once(connection), rows)
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


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
