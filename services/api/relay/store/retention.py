"""Pruning old runs, so no query grows with the whole history."""

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncConnection

from relay.db.tables import runs
from relay.store.runs import FINAL


async def prune_runs(
    connection: AsyncConnection,
    job_ids: set[int],
    keep_per_job: int,
    older_than: datetime,
) -> int:
    """Delete ended runs beyond each job's newest `keep_per_job`, and old ones.

    Only jobs that fired since the last pruning can have grown, so only they are
    looked at; their output goes with them (ON DELETE CASCADE).
    """
    pruned = 0
    for job_id in sorted(job_ids):
        pruned += await _prune_job(connection, job_id, keep_per_job)

    result = await connection.execute(
        delete(runs).where(runs.c.created_at < older_than, runs.c.status.in_(FINAL))
    )
    return pruned + result.rowcount


async def _prune_job(connection: AsyncConnection, job_id: int, keep: int) -> int:
    boundary = await connection.scalar(
        select(runs.c.id)
        .where(runs.c.job_id == job_id)
        .order_by(runs.c.id.desc())
        .offset(keep)
        .limit(1)
    )
    if boundary is None:
        return 0

    result = await connection.execute(
        delete(runs).where(
            runs.c.job_id == job_id, runs.c.id <= boundary, runs.c.status.in_(FINAL)
        )
    )
    return result.rowcount
