"""The calls agents make: heartbeat, claim, and reports about their runs.

These are the hot paths. Heartbeats touch memory only; a claim reads before
it takes the write lock; reports are one or two statements each.
"""

import asyncio
import logging
from contextlib import contextmanager

from aiohttp import web

from relay.errors import Conflict, InvalidInput, NotFound
from relay.http.bodies import integer_field, read_object, string_field
from relay.http.paging import MAX_ID, id_in_path
from relay.keys import (
    AGENT_AUTH,
    CLOCK,
    DATABASE,
    DISPATCHER,
    METRICS,
    OUTPUT,
    SEEN,
    SETTINGS,
)
from relay.store import leases
from relay.store import runs as run_rows
from relay.store.output import Chunk

log = logging.getLogger(__name__)

OUTCOMES = (
    "exited",
    "signaled",
    "timed_out",
    "cancelled",
    "refused",
    "error",
    "interrupted",
)
STREAMS = ("stdout", "stderr")
MAX_CHUNK_CHARACTERS = 256 * 1024
MAX_SLOTS = 100
MAX_RUNNING_LISTED = 1000

routes = web.RouteTableDef()


async def _agent(request: web.Request) -> int:
    agent_id = await request.app[AGENT_AUTH].agent_id(request)
    request.app[SEEN].mark(agent_id, request.app[CLOCK].now())
    return agent_id


def _rhythm(request: web.Request) -> dict:
    return {"heartbeat_seconds": request.app[SETTINGS].heartbeat_seconds}


@routes.post("/agent/heartbeat")
async def heartbeat(request: web.Request) -> web.Response:
    agent_id = await _agent(request)
    running = _run_ids(await read_object(request))

    cancel = []
    if running:
        async with request.app[DATABASE].read() as connection:
            cancel = await leases.cancel_requested_among(connection, agent_id, running)

    return web.json_response({**_rhythm(request), "cancel": cancel})


def _run_ids(body: dict) -> list[int]:
    value = body.get("running", [])
    valid = isinstance(value, list) and len(value) <= MAX_RUNNING_LISTED
    if not valid or not all(type(item) is int and 0 < item <= MAX_ID for item in value):
        raise InvalidInput("running must be a list of run ids", field="running")
    return value


@routes.post("/agent/claim")
async def claim(request: web.Request) -> web.Response:
    agent_id = await _agent(request)
    body = await read_object(request)
    settings = request.app[SETTINGS]
    slots = integer_field(body, "slots", 1, 1, MAX_SLOTS)
    wait = min(_wait_seconds(body), settings.claim_wait_max_seconds)

    claimed = await _claim_within(request, agent_id, slots, wait)
    assignments = [
        run.assignment(name, settings.lease_seconds) for run, name in claimed
    ]
    for run, _ in claimed:
        log.info("run %s claimed by agent %s", run.id, agent_id)
    request.app[METRICS].claims.inc(len(claimed))
    return web.json_response({"runs": assignments, **_rhythm(request), "cancel": []})


def _wait_seconds(body: dict) -> float:
    value = body.get("wait", 25)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 <= value <= 120:
        raise InvalidInput(
            "wait must be a number of seconds from 0 to 120", field="wait"
        )
    return float(value)


async def _claim_within(request, agent_id: int, slots: int, wait: float) -> list:
    """Claim due runs now, or as soon as some are due within `wait` seconds."""
    app = request.app
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    dispatcher = app[DISPATCHER]
    while True:
        # aiohttp does not cancel a handler whose client left; a run handed to
        # a claim nobody reads would sit leased to no one until its lease ran out.
        if request.transport is None or request.transport.is_closing():
            return []
        if dispatcher.closing:
            return []
        if not dispatcher.known_idle(agent_id):
            claimed = await _claim_due(app, agent_id, slots)
            if claimed:
                return claimed
            dispatcher.mark_idle(agent_id)

        remaining = deadline - loop.time()
        if remaining <= 0:
            return []
        await app[DISPATCHER].wait(agent_id, remaining)


async def _claim_due(app: web.Application, agent_id: int, slots: int) -> list:
    """Claim what is due; look first without the write lock, as usually nothing is."""
    now = app[CLOCK].now()
    async with app[DATABASE].read() as connection:
        due = await leases.agents_with_due_runs(connection, [agent_id], now)
    if not due:
        return []

    async with app[DATABASE].write() as connection:
        return await leases.claim_runs(
            connection, agent_id, slots, now, app[SETTINGS].lease_seconds
        )


def _report_run_id(request: web.Request) -> int:
    return id_in_path(request, "run_id", "run", "unknown_run")


async def _report(request: web.Request, action):
    """Run one report under the write lock, mapping lease errors to answers."""
    agent_id = await _agent(request)
    run_id = _report_run_id(request)
    body = await read_object(request)
    token = string_field(body, "lease_token")
    now = request.app[CLOCK].now()

    with _lease_errors(run_id):
        async with request.app[DATABASE].write() as connection:
            return await action(connection, run_id, agent_id, token, now, body)


@contextmanager
def _lease_errors(run_id: int):
    """Answer a report refused for its lease with 409, or 404 if not ours."""
    try:
        yield
    except leases.StaleLease:
        raise Conflict(
            f"Run {run_id} is no longer held with this lease", code="stale_lease"
        ) from None
    except leases.UnknownRun:
        raise NotFound(f"No run {run_id} for this agent", code="unknown_run") from None


def _lease_answer(run: run_rows.Run) -> dict:
    expires = run.lease_expires_at.isoformat() if run.lease_expires_at else None
    return {"status": run.status, "lease_expires_at": expires}


@routes.post("/agent/runs/{run_id}/start")
async def start(request: web.Request) -> web.Response:
    lease = request.app[SETTINGS].lease_seconds

    async def action(connection, run_id, agent_id, token, now, body):
        return await leases.start_run(connection, run_id, agent_id, token, now, lease)

    run = await _report(request, action)
    log.info("run %s started on agent %s", run.id, run.agent_id)
    return web.json_response(_lease_answer(run))


@routes.post("/agent/runs/{run_id}/lease")
async def renew(request: web.Request) -> web.Response:
    lease = request.app[SETTINGS].lease_seconds

    async def action(connection, run_id, agent_id, token, now, body):
        return await leases.renew_lease(connection, run_id, agent_id, token, now, lease)

    run = await _report(request, action)
    return web.json_response({**_lease_answer(run), "cancel": run.cancel_requested})


@routes.post("/agent/runs/{run_id}/output")
async def output(request: web.Request) -> web.Response:
    agent_id = await _agent(request)
    run_id = _report_run_id(request)
    body = await read_object(request)
    token = string_field(body, "lease_token")
    seq, stream, data = _chunk(body)

    chunk = Chunk(run_id, agent_id, token, seq, stream, data)
    with _lease_errors(run_id):
        stored = await request.app[OUTPUT].append(chunk)
    return web.json_response({"stored": stored})


def _chunk(body: dict) -> tuple[int, str, str]:
    seq = integer_field(body, "seq", None, 0, 2**31 - 1)
    if seq is None:
        raise InvalidInput("seq is required", code="missing_field", field="seq")
    stream = body.get("stream")
    if stream not in STREAMS:
        raise InvalidInput("stream must be stdout or stderr", field="stream")
    data = body.get("data")
    if not isinstance(data, str) or len(data) > MAX_CHUNK_CHARACTERS:
        raise InvalidInput(
            f"data must be text of at most {MAX_CHUNK_CHARACTERS} characters",
            field="data",
        )
    return seq, stream, data.replace("\x00", "")


@routes.post("/agent/runs/{run_id}/finish")
async def finish(request: web.Request) -> web.Response:
    async def action(connection, run_id, agent_id, token, now, body):
        report = _finish_report(body)
        return await leases.finish_run(connection, run_id, agent_id, token, now, report)

    run, retry = await _report(request, action)
    request.app[METRICS].runs_finished.labels(run.status).inc()
    log.info(
        "run %s finished on agent %s: %s, exit code %s",
        run.id,
        run.agent_id,
        run.status,
        run.exit_code,
    )
    if retry is not None:
        log.info("run %s retried as run %s", run.id, retry.id)
        if retry.agent_id:
            request.app[DISPATCHER].wake([retry.agent_id])
    return web.json_response({"status": run.status})


def _finish_report(body: dict) -> dict:
    outcome = body.get("outcome")
    if outcome not in OUTCOMES:
        raise InvalidInput(
            f"outcome must be one of {', '.join(OUTCOMES)}", field="outcome"
        )
    exit_code = integer_field(body, "exit_code", None, -(2**31), 2**31 - 1)
    if outcome == "exited" and exit_code is None:
        raise InvalidInput(
            "exit_code is required when outcome is exited", field="exit_code"
        )
    signal = integer_field(body, "signal", None, 1, 128)
    if outcome == "signaled" and signal is None:
        raise InvalidInput(
            "signal is required when outcome is signaled", field="signal"
        )
    if outcome == "exited":
        signal = None
    error = body.get("error")
    if error is not None and not isinstance(error, str):
        raise InvalidInput("error must be a string", field="error")
    if error is not None:
        error = error.replace("\x00", "")[:500]
    if outcome == "refused" and not error:
        error = "refused by the agent's allowlist"
    return {
        "outcome": outcome,
        "exit_code": exit_code,
        "signal": signal,
        "error": error,
    }
