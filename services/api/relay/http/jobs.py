"""Jobs: made, listed, changed, paused, deleted and fired by their owners."""

import logging

from aiohttp import web

from relay.auth.guards import require_user
from relay.auth.tokens import UserIdentity
from relay.errors import InvalidInput, NotFound
from relay.http.agents import query_label
from relay.http.bodies import read_object
from relay.http.job_fields import fire_times, parse_job_changes, parse_new_job
from relay.http.paging import (
    id_in_path,
    page_limit,
    page_of,
    preview_count,
    query_flag,
    query_id,
)
from relay.keys import CLOCK, DATABASE, SCHEDULER
from relay.schedule.cron import parse_schedule, parse_timezone
from relay.store import jobs as job_rows
from relay.store.agents import get_agent

log = logging.getLogger(__name__)

routes = web.RouteTableDef()


async def visible_job(connection, identity: UserIdentity, job_id: int) -> job_rows.Job:
    """The job, if this user may see it: its owner, or an admin."""
    job = await job_rows.get_job(connection, job_id)
    if job is None or not (identity.is_admin or job.owner_id == identity.user_id):
        raise NotFound(f"No job {job_id}", code="job_not_found")
    return job


def _job_id(request: web.Request) -> int:
    return id_in_path(request, "job_id", "job", "job_not_found")


def first_fire(values: dict, now) -> object:
    """The first fire after now; a 400 if the schedule never fires in the zone."""
    schedule = parse_schedule(values["schedule"])
    (fire,) = fire_times(schedule, parse_timezone(values["timezone"]), now, 1)
    return fire


async def _check_target_agent(connection, target: dict) -> None:
    if "agent" in target and await get_agent(connection, target["agent"]) is None:
        raise InvalidInput(
            f"target agent {target['agent']} does not exist", field="target"
        )


@routes.post("/jobs")
async def create(request: web.Request) -> web.Response:
    identity = require_user(request)
    values = parse_new_job(await read_object(request))
    now = request.app[CLOCK].now()

    async with request.app[DATABASE].write() as connection:
        await _check_target_agent(connection, values["target"])
        job = await job_rows.create_job(
            connection, identity.user_id, values, first_fire(values, now), now
        )

    request.app[SCHEDULER].wake()
    log.info("job %s created by user %s", job.id, identity.user_id)
    return web.json_response(job.public(), status=201)


@routes.get("/jobs")
async def list_all(request: web.Request) -> web.Response:
    identity = require_user(request)
    limit = page_limit(request)
    after = query_id(request, "cursor") or 0
    filters = {
        "enabled": query_flag(request, "enabled"),
        "agent_id": query_id(request, "agent"),
        "label": query_label(request),
    }

    owner = None if identity.is_admin else identity.user_id
    async with request.app[DATABASE].read() as connection:
        found = await job_rows.list_jobs(connection, owner, after, limit + 1, **filters)

    return web.json_response(page_of([job.public() for job in found], limit))


@routes.get("/jobs/{job_id}")
async def show(request: web.Request) -> web.Response:
    identity = require_user(request)

    async with request.app[DATABASE].read() as connection:
        job = await visible_job(connection, identity, _job_id(request))

    return web.json_response(job.public())


@routes.patch("/jobs/{job_id}")
async def change(request: web.Request) -> web.Response:
    identity = require_user(request)
    changes = parse_job_changes(await read_object(request))

    job = await change_job(request.app, identity, _job_id(request), changes)
    return web.json_response(job.public())


async def change_job(
    app: web.Application, identity: UserIdentity, job_id: int, changes: dict
) -> job_rows.Job:
    """Apply checked changes to a job this user may see; wake the scheduler."""
    now = app[CLOCK].now()
    async with app[DATABASE].write() as connection:
        job = await visible_job(connection, identity, job_id)
        if "target" in changes:
            await _check_target_agent(connection, changes["target"])
        merged = {**job.public(), **changes}
        # A changed schedule, zone or a resume starts from now: no catch-up
        # of fires from before the change.
        replan = {"schedule", "timezone", "enabled"} & set(changes)
        next_at = first_fire(merged, now) if replan else job.next_fire_at
        changed = await job_rows.update_job(connection, job.id, changes, next_at, now)
        if changed is None:  # deleted since it was read
            raise NotFound(f"No job {job.id}", code="job_not_found")
        job = changed

    app[SCHEDULER].wake()
    log.info("job %s changed by user %s: %s", job.id, identity.user_id, sorted(changes))
    return job


@routes.delete("/jobs/{job_id}")
async def remove(request: web.Request) -> web.Response:
    identity = require_user(request)

    async with request.app[DATABASE].write() as connection:
        job = await visible_job(connection, identity, _job_id(request))
        if not await job_rows.delete_job(connection, job.id):
            raise NotFound(f"No job {job.id}", code="job_not_found")

    log.info("job %s deleted by user %s", job.id, identity.user_id)
    return web.Response(status=204)


@routes.post("/jobs/{job_id}/run")
async def run_now(request: web.Request) -> web.Response:
    identity = require_user(request)

    created = await fire_by_hand(request.app, identity, _job_id(request))
    return web.json_response({"runs": [run.public() for run in created]}, status=201)


async def fire_by_hand(app: web.Application, identity: UserIdentity, job_id: int):
    """Fire a job this user may see, now, under its own rules."""
    async with app[DATABASE].read() as connection:
        job = await visible_job(connection, identity, job_id)

    created = await app[SCHEDULER].fire_now(job, app[CLOCK].now())
    log.info("job %s fired by hand by user %s", job.id, identity.user_id)
    return created


@routes.get("/jobs/{job_id}/next")
async def upcoming(request: web.Request) -> web.Response:
    identity = require_user(request)
    count = preview_count(request.query.get("count", "5"))

    async with request.app[DATABASE].read() as connection:
        job = await visible_job(connection, identity, _job_id(request))

    zone = parse_timezone(job.timezone)
    fires = fire_times(
        parse_schedule(job.schedule), zone, request.app[CLOCK].now(), count
    )
    return web.json_response(
        {"fire_times": [moment.astimezone(zone).isoformat() for moment in fires]}
    )
