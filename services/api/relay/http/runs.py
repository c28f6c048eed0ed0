"""Runs as users see them: history, one run with its output, cancelling."""

import logging

from aiohttp import web

from relay.auth.guards import require_user
from relay.errors import Conflict, InvalidInput, NotFound
from relay.http.jobs import visible_job
from relay.http.paging import id_in_path, page_limit, page_of, query_id
from relay.keys import CLOCK, DATABASE
from relay.store import runs as run_rows
from relay.store.output import read_output

log = logging.getLogger(__name__)

STATUSES = run_rows.ACTIVE + run_rows.FINAL
STREAMS = ("stdout", "stderr")

routes = web.RouteTableDef()


def _run_id(request: web.Request) -> int:
    return id_in_path(request, "run_id", "run", "run_not_found")


async def visible_run(connection, identity, run_id: int) -> run_rows.Run:
    run = await run_rows.get_run(connection, run_id)
    if run is None:
        raise NotFound(f"No run {run_id}", code="run_not_found")

    try:
        await visible_job(connection, identity, run.job_id)
    except NotFound:
        raise NotFound(f"No run {run_id}", code="run_not_found") from None
    return run


def _filters(request: web.Request) -> dict:
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        raise InvalidInput(
            f"status must be one of {', '.join(STATUSES)}", field="status"
        )
    return {"status": status, "agent_id": query_id(request, "agent")}


@routes.get("/runs")
async def list_all(request: web.Request) -> web.Response:
    identity = require_user(request)
    limit, before = page_limit(request), query_id(request, "cursor")
    filters = {**_filters(request), "job_id": query_id(request, "job")}

    owner = None if identity.is_admin else identity.user_id
    async with request.app[DATABASE].read() as connection:
        found = await run_rows.list_runs(
            connection, owner, before, limit + 1, **filters
        )

    return web.json_response(page_of([run.public() for run in found], limit))


@routes.get("/jobs/{job_id}/runs")
async def list_for_job(request: web.Request) -> web.Response:
    identity = require_user(request)
    limit, before = page_limit(request), query_id(request, "cursor")
    job_id = id_in_path(request, "job_id", "job", "job_not_found")

    async with request.app[DATABASE].read() as connection:
        job = await visible_job(connection, identity, job_id)
        found = await run_rows.list_runs(
            connection, None, before, limit + 1, job_id=job.id, **_filters(request)
        )

    return web.json_response(page_of([run.public() for run in found], limit))


@routes.get("/runs/{run_id}")
async def show(request: web.Request) -> web.Response:
    identity = require_user(request)

    async with request.app[DATABASE].read() as connection:
        run = await visible_run(connection, identity, _run_id(request))
        output = await read_output(connection, run)

    return web.json_response({**run.public(), "output": output})


@routes.get("/runs/{run_id}/output")
async def output(request: web.Request) -> web.Response:
    identity = require_user(request)
    stream = request.query.get("stream")
    if stream is not None and stream not in STREAMS:
        raise InvalidInput("stream must be stdout or stderr", field="stream")

    async with request.app[DATABASE].read() as connection:
        run = await visible_run(connection, identity, _run_id(request))
        text = await read_output(connection, run, stream)

    return web.Response(text=text, content_type="text/plain")


@routes.post("/runs/{run_id}/cancel")
async def cancel(request: web.Request) -> web.Response:
    identity = require_user(request)
    now = request.app[CLOCK].now()

    async with request.app[DATABASE].write() as connection:
        run = await visible_run(connection, identity, _run_id(request))
        if run.status not in run_rows.ACTIVE:
            raise Conflict(
                f"Run {run.id} already ended: {run.status}", code="run_ended"
            )
        await run_rows.request_cancel(
            connection, [run.id], now, f"cancel requested by {identity.username}"
        )
        run = await run_rows.get_run(connection, run.id)

    log.info("run %s cancel requested by user %s", run.id, identity.user_id)
    return web.json_response(run.public(), status=202)
