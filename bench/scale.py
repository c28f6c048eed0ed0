"""One relay on SQLite with 10,000 jobs and 500 agents: how long a tick takes.

Makes the fleet straight through the store (no HTTP), puts every job's next
fire on the same minute, and times the scheduler deciding them all, then a
quiet tick (nothing due), under a manual clock. A history of older runs is
added first, so the figures show whether any query grows with it.
"""

import asyncio
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, update

from relay.db.engine import Database, create_engine
from relay.db.tables import agents, jobs, runs, users
from relay.schedule.clock import ManualClock
from relay.schedule.dispatch import Dispatcher
from relay.schedule.scheduler import Scheduler
from relay.settings import load_settings
from relay_migrator.revisions import upgrade_to_head_async

JOBS = int(os.environ.get("BENCH_JOBS", "10000"))
AGENTS = int(os.environ.get("BENCH_AGENTS", "500"))
HISTORY = int(os.environ.get("BENCH_HISTORY", "200000"))
FIRE = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


async def fill(database: Database) -> None:
    now = FIRE - timedelta(seconds=30)
    async with database.write() as connection:
        await connection.execute(
            insert(users),
            [{"username": "ops", "username_key": "ops", "password_hash": "x",
              "is_admin": True, "created_at": now}],
        )  # fmt: skip
        await connection.execute(
            insert(agents), [_agent(n, now) for n in range(AGENTS)]
        )
        await connection.execute(insert(jobs), [_job(n, now) for n in range(JOBS)])
        for start in range(0, HISTORY, 10_000):
            batch = range(start, min(start + 10_000, HISTORY))
            await connection.execute(insert(runs), [_old_run(n, now) for n in batch])


def _agent(number: int, now: datetime) -> dict:
    labels = ["linux", f"rack-{number % 10}"]
    return {
        "hostname": f"agent-{number}",
        "hostname_key": f"agent-{number}",
        "ip": "127.0.0.1",
        "labels": labels,
        "token_hash": f"{number:064d}",
        "created_at": now,
        "updated_at": now,
        "last_seen_at": now,
    }


def _job(number: int, now: datetime) -> dict:
    target = {"labels": ["linux", f"rack-{number % 10}"]}
    return {
        "owner_id": 1,
        "name": f"job-{number}",
        "description": "",
        "schedule": "0 10 * * *" if number % 2 else "*/5 * * * *",
        "timezone": "Europe/Berlin" if number % 3 else "UTC",
        "command": "true",
        "target": target,
        "target_labels": f",linux,rack-{number % 10},",
        "timeout_seconds": 3600,
        "retries": 0,
        "retry_backoff_seconds": 60,
        "concurrency": "forbid",
        "catchup": "skip",
        "enabled": True,
        "env": {},
        "next_fire_at": FIRE,
        "created_at": now,
        "updated_at": now,
    }


def _old_run(number: int, now: datetime) -> dict:
    moment = now - timedelta(minutes=number + 1)
    return {
        "job_id": number % JOBS + 1,
        "scheduled_for": moment,
        "slot": 0,
        "attempt": 1,
        "trigger": "schedule",
        "manual": False,
        "agent_id": number % AGENTS + 1,
        "status": "succeeded",
        "command": "true",
        "env": {},
        "timeout_seconds": 3600,
        "cancel_requested": False,
        "not_before": moment,
        "created_at": moment,
        "finished_at": moment,
        "exit_code": 0,
        "output_bytes": 0,
        "output_kept_bytes": 0,
    }


async def heartbeats(database: Database, now: datetime) -> None:
    """Every agent heard from just now, as a live fleet would be."""
    async with database.write() as connection:
        await connection.execute(update(agents).values(last_seen_at=now))


async def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="relay-scale-"))
    url = f"sqlite+aiosqlite:///{folder / 'relay.db'}"
    await upgrade_to_head_async(url)
    settings = load_settings({"DATABASE_URL": url, "SECRET_KEY": "s" * 40})
    database = Database(create_engine(url))
    clock = ManualClock(FIRE - timedelta(seconds=30))
    scheduler = Scheduler(database, settings, clock, Dispatcher(database, clock))

    started = time.perf_counter()
    await fill(database)
    print(f"filled {JOBS} jobs, {AGENTS} agents, {HISTORY} old runs "
          f"in {time.perf_counter() - started:.1f} s")  # fmt: skip

    await clock.set(FIRE)
    await heartbeats(database, clock.now())
    started = time.perf_counter()
    report = await scheduler.tick()
    busy = time.perf_counter() - started
    print(f"tick deciding {report.fired_jobs} fires, {report.runs_created} runs: "
          f"{busy:.2f} s")  # fmt: skip

    await clock.advance(30)
    await heartbeats(database, clock.now())
    started = time.perf_counter()
    await scheduler.tick()
    print(f"quiet tick: {(time.perf_counter() - started) * 1000:.1f} ms")
    await database.dispose()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
