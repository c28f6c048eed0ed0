"""The web UI: pages rendered on the server for people, beside the JSON API.

A person logs in with a form; the user token then rides in an HttpOnly,
SameSite=Strict cookie, so other sites cannot make the browser send it.
"""

import logging
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp_jinja2
import jinja2
from aiohttp import web

from relay.auth.tokens import TokenError, UserIdentity
from relay.errors import Forbidden, NotLoggedIn
from relay.http.jobs import change_job, fire_by_hand, visible_job
from relay.http.paging import id_in_path
from relay.http.runs import visible_run
from relay.http.users import check_password
from relay.keys import CLOCK, DATABASE, SETTINGS, USER_TOKENS
from relay.schedule.cron import next_fires, parse_schedule, parse_timezone
from relay.store import jobs as job_rows
from relay.store import runs as run_rows
from relay.store.agents import list_agents
from relay.store.output import read_output

log = logging.getLogger(__name__)

COOKIE = "relay_session"
HERE = Path(__file__).parent
PAGE_SIZE = 200

routes = web.RouteTableDef()


def setup_ui(app: web.Application) -> None:
    environment = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]),
    )
    environment.globals.update(moment=moment, target=describe_target)
    app.router.add_routes(routes)
    app.router.add_static("/ui/static", HERE / "static")


def moment(value: datetime | str | None, zone: str) -> str:
    """A time as a person reads it, in the job's own zone."""
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def describe_target(target: dict) -> str:
    if "agent" in target:
        return f"agent {target['agent']}"
    labels = ", ".join(target["labels"]) or "any label"
    return (
        f"every agent with {labels}"
        if target.get("all")
        else f"one agent with {labels}"
    )


def session_identity(request: web.Request) -> UserIdentity:
    token = request.cookies.get(COOKIE)
    if not token:
        raise NotLoggedIn

    try:
        return request.app[USER_TOKENS].verify(token)
    except TokenError:
        raise NotLoggedIn from None


def same_origin(request: web.Request) -> None:
    """Refuse a form posted from another site (a second guard beside SameSite)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin.split("://", 1)[-1] != request.host:
        raise Forbidden("Forms must come from this relay's own pages")


@routes.get("/")
async def root(request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")


@routes.get("/ui/login")
@aiohttp_jinja2.template("login.html")
async def login_page(request: web.Request) -> dict:
    return {"identity": None}


@routes.post("/ui/login")
async def login(request: web.Request) -> web.Response:
    same_origin(request)
    form = await request.post()
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))

    valid = username and password and "\x00" not in username + password
    user = await check_password(request.app, username, password) if valid else None
    if user is None:
        context = {"identity": None, "error": "Invalid username or password"}
        context["username"] = username
        return aiohttp_jinja2.render_template(
            "login.html", request, context, status=401
        )

    token = request.app[USER_TOKENS].issue(user.id, user.username, user.is_admin)
    response = web.HTTPSeeOther("/ui/")
    response.set_cookie(
        COOKIE,
        token,
        max_age=request.app[SETTINGS].token_ttl_seconds,
        httponly=True,
        samesite="Strict",
        path="/",
    )
    log.info("user %s logged in to the UI", user.id)
    raise response


@routes.post("/ui/logout")
async def logout(request: web.Request) -> web.Response:
    same_origin(request)
    response = web.HTTPSeeOther("/ui/login")
    response.del_cookie(COOKIE, path="/")
    raise response


@routes.get("/ui/")
@aiohttp_jinja2.template("jobs.html")
async def jobs_page(request: web.Request) -> dict:
    identity = session_identity(request)
    owner = None if identity.is_admin else identity.user_id

    async with request.app[DATABASE].read() as connection:
        jobs = await job_rows.list_jobs(connection, owner, 0, PAGE_SIZE)
        last = await run_rows.latest_runs(connection, [job.id for job in jobs])

    return {"identity": identity, "jobs": jobs, "last_runs": last}


@routes.get("/ui/jobs/{job_id}")
@aiohttp_jinja2.template("job.html")
async def job_page(request: web.Request) -> dict:
    identity = session_identity(request)
    job_id = id_in_path(request, "job_id", "job", "job_not_found")

    async with request.app[DATABASE].read() as connection:
        job = await visible_job(connection, identity, job_id)
        runs = await run_rows.list_runs(connection, None, None, 50, job_id=job.id)

    zone = parse_timezone(job.timezone)
    now = request.app[CLOCK].now()
    upcoming = next_fires(parse_schedule(job.schedule), zone, now, 5)
    return {
        "identity": identity,
        "job": job,
        "runs": runs,
        "upcoming": [moment(at, job.timezone) for at in upcoming],
    }


@routes.post("/ui/jobs/{job_id}/run")
async def run_now(request: web.Request) -> web.Response:
    identity = session_identity(request)
    same_origin(request)
    job_id = id_in_path(request, "job_id", "job", "job_not_found")

    await fire_by_hand(request.app, identity, job_id)
    raise web.HTTPSeeOther(f"/ui/jobs/{job_id}")


@routes.post("/ui/jobs/{job_id}/toggle")
async def toggle(request: web.Request) -> web.Response:
    identity = session_identity(request)
    same_origin(request)
    job_id = id_in_path(request, "job_id", "job", "job_not_found")

    async with request.app[DATABASE].read() as connection:
        job = await visible_job(connection, identity, job_id)
    await change_job(request.app, identity, job.id, {"enabled": not job.enabled})

    raise web.HTTPSeeOther(f"/ui/jobs/{job.id}")


@routes.get("/ui/runs/{run_id}")
@aiohttp_jinja2.template("run.html")
async def run_page(request: web.Request) -> dict:
    identity = session_identity(request)
    run_id = id_in_path(request, "run_id", "run", "run_not_found")

    async with request.app[DATABASE].read() as connection:
        run = await visible_run(connection, identity, run_id)
        job = await visible_job(connection, identity, run.job_id)
        output = await read_output(connection, run)

    return {"identity": identity, "run": run, "job": job, "output": output}


@routes.get("/ui/agents")
@aiohttp_jinja2.template("agents.html")
async def agents_page(request: web.Request) -> dict:
    identity = session_identity(request)

    async with request.app[DATABASE].read() as connection:
        agents = await list_agents(connection)

    now, heartbeat = request.app[CLOCK].now(), request.app[SETTINGS].heartbeat_seconds
    return {"identity": identity, "agents": [a.public(now, heartbeat) for a in agents]}
