"""The scheduler: one asyncio task that fires due jobs and takes back lost runs.

It sleeps until the earliest next fire, or until a job changes, or for at
most SWEEP_SECONDS so that expired leases and silent agents are noticed.
"""

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from relay.db.engine import Database
from relay.errors import NotFound
from relay.metrics import Metrics
from relay.schedule.clock import Clock
from relay.schedule.cron import next_fire, parse_schedule, parse_timezone
from relay.schedule.dispatch import Dispatcher
from relay.schedule.fires import CANCEL_REPLACED, SKIP_NO_AGENT, plan_fires
from relay.schedule.fleet import Fleet, FleetAgent, Turns
from relay.schedule.leadership import SoleLeader
from relay.settings import Settings
from relay.store import jobs as job_rows
from relay.store import recovery
from relay.store import runs as run_rows
from relay.store.agents import MISSED_HEARTBEATS_OFFLINE, online_agents
from relay.store.heartbeats import SeenBuffer
from relay.store.retention import prune_runs

log = logging.getLogger(__name__)

SWEEP_SECONDS = 1.0
STANDBY_SECONDS = 2.0
PRUNE_SECONDS = 60.0
DUE_BATCH = 200
# Fires older than this are not enumerated one by one after a long outage.
LOOKBACK = timedelta(days=8)
MAX_FIRES_ENUMERATED = 20_000


@dataclass
class TickReport:
    fired_jobs: int = 0
    runs_created: int = 0
    runs_lost: int = 0
    runs_reassigned: int = 0
    woken_agents: set[int] = field(default_factory=set)


class Scheduler:
    def __init__(
        self,
        database: Database,
        settings: Settings,
        clock: Clock,
        dispatcher: Dispatcher,
        seen: SeenBuffer | None = None,
        leadership=None,
        metrics: Metrics | None = None,
    ) -> None:
        self.database = database
        self.settings = settings
        self.clock = clock
        self.dispatcher = dispatcher
        self.seen = seen
        self.leadership = leadership or SoleLeader()
        self.turns = Turns()
        self._wake = asyncio.Event()
        self._runs_since_prune: dict[int, int] = {}
        self._last_prune: datetime | None = None
        self._leading_since: datetime | None = None
        self.metrics = metrics or Metrics()

    def wake(self) -> None:
        """Decide again now: a job was made, changed or fired by hand."""
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            leading = await self.leadership.hold()
            self.metrics.leader.set(1 if leading else 0)
            if not leading:
                self._leading_since = None
                await asyncio.sleep(STANDBY_SECONDS)
                continue
            if self._leading_since is None:
                self._leading_since = self.clock.now()

            self._wake.clear()
            try:
                await self.tick()
                until = await self._next_wake()
            except Exception:
                log.exception("scheduler tick failed")
                until = self.clock.now() + timedelta(seconds=SWEEP_SECONDS)
            await self.clock.wait(self._wake, until)

    async def _next_wake(self) -> datetime:
        sweep_at = self.clock.now() + timedelta(seconds=SWEEP_SECONDS)
        async with self.database.read() as connection:
            earliest = await job_rows.earliest_fire(connection)
        return sweep_at if earliest is None else min(earliest, sweep_at)

    async def tick(self) -> TickReport:
        """Fire what is due, take back what was lost; one pass, at clock time."""
        now = self.clock.now()
        report = TickReport()
        with self.metrics.tick_seconds.time():
            if self.seen is not None:
                await self.seen.flush()

            await self._fire_due(now, report)
            await self._sweep(now, report)
            await self._prune_now_and_then(now)
        self.dispatcher.wake(report.woken_agents)
        return report

    # Fires -----------------------------------------------------------------

    async def _fire_due(self, now: datetime, report: TickReport) -> None:
        while True:
            async with self.database.read() as connection:
                due = await job_rows.due_jobs(connection, now, DUE_BATCH)
            if not due:
                return

            fleet = await self._fleet(now)
            async with self.database.write() as connection:
                moved = await self._fire_batch(connection, due, now, fleet, report)
            # A batch none of which moved was taken by another scheduler
            # meanwhile; reading it again would only spin.
            if len(due) < DUE_BATCH or not moved:
                return

    async def _fire_batch(self, connection, due, now, fleet, report) -> int:
        """Decide a batch of due jobs in a handful of statements, not per job."""
        moves, fires = {}, {}
        for job in due:
            try:
                fires[job.id], moves[job.id] = _fires_until(job, now)
            except ValueError as exc:
                # A zone can leave tzdata; the job stops rather than fire wrongly.
                log.error("job %s cannot be scheduled: %s", job.id, exc)
                moves[job.id] = None

        won = await job_rows.advance_jobs(
            connection, [(job.id, job.next_fire_at, moves[job.id]) for job in due]
        )
        fired = [job for job in due if job.id in won and job.id in fires]
        active = await run_rows.active_runs_by_job(connection, [j.id for j in fired])

        planned, cancels = [], []
        for job in fired:
            plan = plan_fires(job, fires[job.id], now, active.get(job.id, []), fleet)
            planned += [(job, run) for run in plan.runs]
            cancels += plan.cancel_run_ids

        created = await run_rows.insert_fires(connection, planned, now)
        await run_rows.request_cancel(connection, cancels, now, CANCEL_REPLACED)
        self._record(fired, created, report)
        return len(won)

    def _record(self, fired, created, report: TickReport) -> None:
        for run in created:
            counted = self._runs_since_prune.get(run.job_id, 0)
            self._runs_since_prune[run.job_id] = counted + 1
            self.metrics.fires.labels(run.status).inc()
            lateness = (run.created_at - run.scheduled_for).total_seconds()
            self.metrics.fire_lateness.observe(max(0.0, lateness))
        report.fired_jobs += len(fired)
        report.runs_created += len(created)
        report.woken_agents.update(run.agent_id for run in created if run.agent_id)
        for run in created:
            log.info(
                "job %s fired for %s: run %s %s on agent %s",
                run.job_id,
                run.scheduled_for.isoformat(),
                run.id,
                run.status,
                run.agent_id,
            )

    async def fire_now(self, job, now: datetime) -> list[run_rows.Run]:
        """Fire a job by hand: one fire at `now`, under the job's own rules."""
        fleet = await self._fleet(now)
        async with self.database.write() as connection:
            # The job's row lock makes fires of one job take turns, so two at
            # once cannot both find no active run and break "forbid".
            if not await job_rows.lock_job(connection, job.id):
                raise NotFound(f"No job {job.id}", code="job_not_found")
            active = await run_rows.active_runs_by_job(connection, [job.id])
            plan = plan_fires(job, [now], now, active.get(job.id, []), fleet, "manual")
            planned = [(job, run) for run in plan.runs]
            created = await run_rows.insert_fires(connection, planned, now)
            await run_rows.request_cancel(
                connection, plan.cancel_run_ids, now, CANCEL_REPLACED
            )

        self.dispatcher.wake(run.agent_id for run in created if run.agent_id)
        return created

    async def _fleet(self, now: datetime) -> Fleet:
        seen_since = now - self._offline_after()
        async with self.database.read() as connection:
            agents = await online_agents(connection, seen_since)
            load = await run_rows.active_load(connection)
        return Fleet(
            [FleetAgent(agent_id, frozenset(labels)) for agent_id, labels in agents],
            load,
            self.turns,
        )

    def _offline_after(self) -> timedelta:
        return timedelta(
            seconds=self.settings.heartbeat_seconds * MISSED_HEARTBEATS_OFFLINE
        )

    # Sweeps ----------------------------------------------------------------

    def _agents_had_time(self, now: datetime) -> bool:
        """Whether agents have had a lease's length to reach this scheduler.

        After an outage of the relay (or of the leader) agents could not renew
        leases nor heartbeat; taking their runs back at once would declare lost
        runs that are still running. So a new leader waits that long first.
        """
        if self._leading_since is None:
            return True
        grace = timedelta(seconds=self.settings.lease_seconds)
        return now - self._leading_since >= grace

    async def _sweep(self, now: datetime, report: TickReport) -> None:
        fleet = await self._fleet(now)
        async with self.database.write() as connection:
            if self._agents_had_time(now):
                await self._take_back_stale(connection, now, report)
            await self._assign_waiting(connection, now, fleet, report)

    async def _take_back_stale(self, connection, now, report) -> None:
        for run in await recovery.expired_leases(connection, now):
            await self._take_back(connection, run, now, "lease expired", report)

        offline = await recovery.held_by_offline_agents(
            connection, now - self._offline_after()
        )
        for run in offline:
            if run.status == "pending":
                await recovery.unassign(connection, run)
            else:
                await self._take_back(connection, run, now, "agent offline", report)

    async def _take_back(self, connection, run, now, reason, report) -> None:
        if not await recovery.declare_lost(connection, run, now, reason):
            return

        report.runs_lost += 1
        self.metrics.runs_lost.inc()
        log.warning("run %s lost from agent %s: %s", run.id, run.agent_id, reason)
        lost = replace(run, status="lost")
        retry = await recovery.retry_if_allowed(connection, lost, now)
        if retry is not None:
            log.info("run %s retried as run %s", run.id, retry.id)

    async def _assign_waiting(self, connection, now, fleet, report) -> None:
        """Give due runs that have no agent to one; skip those none can take."""
        for run, target in await recovery.unassigned_due(connection, now):
            agent_id = _choose(fleet, target, run)
            reason = _no_agent_reason(target)
            if not await recovery.reassign_pending(
                connection, run, agent_id, now, reason
            ):
                continue

            report.runs_reassigned += 1
            if agent_id is None:
                log.info("run %s skipped: %s", run.id, reason)
                continue
            report.woken_agents.add(agent_id)
            log.info("run %s assigned to agent %s", run.id, agent_id)

    async def _prune_now_and_then(self, now: datetime) -> None:
        if (
            self._last_prune
            and (now - self._last_prune).total_seconds() < PRUNE_SECONDS
        ):
            return

        self._last_prune = now
        job_ids = self._jobs_to_prune()
        async with self.database.write() as connection:
            pruned = await prune_runs(
                connection,
                job_ids,
                keep_per_job=self.settings.run_retention_per_job,
                older_than=now - timedelta(days=self.settings.run_retention_days),
            )
        if pruned:
            log.info("pruned %s old runs", pruned)

    def _jobs_to_prune(self) -> set[int]:
        """Jobs that made a tenth of their run allowance since last pruned.

        Looking at every job that fired would cost a query per job per minute;
        a job can only pass its allowance by making runs, so it is looked at
        after a tenth of it. Counts are kept in memory: after a restart the
        age limit still prunes while the counts build up again.
        """
        step = max(1, self.settings.run_retention_per_job // 10)
        due = {
            job_id for job_id, made in self._runs_since_prune.items() if made >= step
        }
        for job_id in due:
            del self._runs_since_prune[job_id]
        return due


def _choose(fleet: Fleet, target: dict, run) -> int | None:
    if "agent" in target:
        return target["agent"] if fleet.is_online(target["agent"]) else None
    if target.get("all"):
        return run.slot if fleet.is_online(run.slot) else None
    return fleet.choose(target.get("labels", []))


def _no_agent_reason(target: dict) -> str:
    if "agent" in target:
        return f"agent {target['agent']} offline"
    return SKIP_NO_AGENT


def _fires_until(job, now: datetime) -> tuple[list[datetime], datetime]:
    """The job's fire times up to `now`, and its first fire after."""
    schedule = parse_schedule(job.schedule)
    zone = parse_timezone(job.timezone)
    fire_times = []
    moment = job.next_fire_at
    if moment < now - LOOKBACK:
        moment = next_fire(schedule, zone, now - LOOKBACK)

    while moment <= now and len(fire_times) < MAX_FIRES_ENUMERATED:
        fire_times.append(moment)
        moment = next_fire(schedule, zone, moment)

    # Fires follow one another, so the first one after the last due fire is
    # the first after now, unless the enumeration stopped at its limit.
    if moment > now:
        return fire_times, moment
    return fire_times, next_fire(schedule, zone, now)
