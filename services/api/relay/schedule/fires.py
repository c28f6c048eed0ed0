"""What a job's due fires become: runs to hand out, or skips with a reason.

Everything here is decided from values passed in, with no database, so the
rules (catch-up, overlap, targets) can be read and tested in one place.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from relay.schedule.fleet import Fleet
from relay.store.jobs import Job

# A fire decided later than this after its time was missed (the relay was down
# or stalled), and the job's catch-up policy decides what happens to it.
MISFIRE_GRACE = timedelta(seconds=60)

# However long the relay was down, one job records at most this many skipped
# fires per decision, the latest ones; the reason of the oldest says how many.
MAX_SKIPS_RECORDED = 100

SKIP_PAUSED = "job paused at fire time"
SKIP_MISSED = "missed while the relay was down"
SKIP_OVERLAP = "overlap forbidden: an earlier run of the job is still active"
SKIP_NO_AGENT = "no matching agent online"
CANCEL_REPLACED = "replaced by a later fire"


@dataclass
class PlannedRun:
    scheduled_for: datetime
    trigger: str
    status: str = "pending"
    agent_id: int | None = None
    slot: int = 0
    reason: str | None = None


@dataclass
class FirePlan:
    runs: list[PlannedRun] = field(default_factory=list)
    # Active runs of the job that a "replace" fire cancels.
    cancel_run_ids: list[int] = field(default_factory=list)
    skipped_unrecorded: int = 0


def plan_fires(
    job: Job,
    fire_times: list[datetime],
    now: datetime,
    active_run_ids: list[int],
    fleet: Fleet,
    trigger: str = "schedule",
) -> FirePlan:
    """Decide every due fire of one job, oldest first."""
    plan = FirePlan()
    if not job.enabled:
        _skip_all(plan, fire_times, SKIP_PAUSED, trigger)
        return plan

    on_time, missed = _split_missed(fire_times, now)
    to_run, to_skip = _apply_catchup(job.catchup, on_time, missed, now)
    _skip_all(plan, to_skip, SKIP_MISSED, "catchup")

    active = list(active_run_ids)
    for scheduled_for in to_run:
        kind = trigger if scheduled_for in on_time else "catchup"
        _plan_one(plan, job, scheduled_for, kind, active, fleet)

    plan.runs.sort(key=lambda run: (run.scheduled_for, run.slot))
    return plan


def _split_missed(
    fire_times: list[datetime], now: datetime
) -> tuple[list[datetime], list[datetime]]:
    on_time = [moment for moment in fire_times if now - moment <= MISFIRE_GRACE]
    missed = [moment for moment in fire_times if now - moment > MISFIRE_GRACE]
    return on_time, missed


def _apply_catchup(
    catchup: str | dict,
    on_time: list[datetime],
    missed: list[datetime],
    now: datetime,
) -> tuple[list[datetime], list[datetime]]:
    """Split fires into those to run and those to skip as missed."""
    if not missed or catchup == "skip":
        return on_time, missed

    if catchup == "once":
        # One run stands for everything missed, unless a fire is due anyway.
        if on_time:
            return on_time, missed
        return [missed[-1]], missed[:-1]

    max_age = timedelta(seconds=catchup["max_age_seconds"])
    recent = [moment for moment in missed if now - moment <= max_age]
    replay = recent[-catchup["max_runs"] :] if catchup["max_runs"] else []
    skipped = [moment for moment in missed if moment not in replay]
    return replay + on_time, skipped


def _skip_all(
    plan: FirePlan, fire_times: list[datetime], reason: str, trigger: str
) -> None:
    recorded = fire_times[-MAX_SKIPS_RECORDED:]
    plan.skipped_unrecorded += len(fire_times) - len(recorded)
    for scheduled_for in recorded:
        plan.runs.append(PlannedRun(scheduled_for, trigger, "skipped", reason=reason))

    if plan.skipped_unrecorded and recorded:
        first = plan.runs[-len(recorded)]
        first.reason = f"{reason} (and {plan.skipped_unrecorded} earlier fires)"


def _plan_one(
    plan: FirePlan,
    job: Job,
    scheduled_for: datetime,
    trigger: str,
    active: list,
    fleet: Fleet,
) -> None:
    if active and job.concurrency == "forbid":
        plan.runs.append(
            PlannedRun(scheduled_for, trigger, "skipped", reason=SKIP_OVERLAP)
        )
        return

    if active and job.concurrency == "replace":
        _replace_active(plan, active)

    for run in _targeted(job, scheduled_for, trigger, fleet):
        plan.runs.append(run)
        if run.status == "pending":
            active.append(run)


def _replace_active(plan: FirePlan, active: list) -> None:
    """Cancel what is active: stored runs by id, and runs planned just before
    in this same decision (a replay of several missed fires), in place."""
    for run in active:
        if isinstance(run, PlannedRun):
            run.status, run.reason = "cancelled", CANCEL_REPLACED
        else:
            plan.cancel_run_ids.append(run)
    active.clear()


def _targeted(
    job: Job, scheduled_for: datetime, trigger: str, fleet: Fleet
) -> list[PlannedRun]:
    """The runs of one fire: one per agent it goes to, or one skip."""
    target = job.target
    if "agent" in target:
        agent_id = target["agent"]
        if not fleet.is_online(agent_id):
            reason = f"agent {agent_id} offline"
            return [PlannedRun(scheduled_for, trigger, "skipped", reason=reason)]
        fleet.assign(agent_id)
        return [PlannedRun(scheduled_for, trigger, agent_id=agent_id)]

    if target.get("all"):
        agents = fleet.matching(target["labels"])
        if not agents:
            return [PlannedRun(scheduled_for, trigger, "skipped", reason=SKIP_NO_AGENT)]
        for agent in agents:
            fleet.assign(agent.id)
        return [
            PlannedRun(scheduled_for, trigger, agent_id=agent.id, slot=agent.id)
            for agent in sorted(agents, key=lambda agent: agent.id)
        ]

    agent_id = fleet.choose(target["labels"])
    if agent_id is None:
        return [PlannedRun(scheduled_for, trigger, "skipped", reason=SKIP_NO_AGENT)]
    return [PlannedRun(scheduled_for, trigger, agent_id=agent_id)]
