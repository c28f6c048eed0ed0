"""Liveness and readiness, for load balancers and orchestrators."""

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import SQLAlchemyError

from relay.db.schema import current_revision, expected_revision
from relay.errors import error_response
from relay.keys import CLOCK, DATABASE, METRICS, SETTINGS
from relay.store.agents import list_agents

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Counts for Prometheus; no ids, names or commands, so no login."""
    await _count_agents(request)
    body = generate_latest(request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _count_agents(request: web.Request) -> None:
    settings, now = request.app[SETTINGS], request.app[CLOCK].now()
    async with request.app[DATABASE].read() as connection:
        found = await list_agents(connection)
    online = sum(agent.is_online(now, settings.heartbeat_seconds) for agent in found)
    request.app[METRICS].agents.labels("online").set(online)
    request.app[METRICS].agents.labels("offline").set(len(found) - online)


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    try:
        revision = await current_revision(request.app[DATABASE])
    except (SQLAlchemyError, OSError):
        return error_response(
            503, "database_unavailable", "The database is unavailable"
        )

    head = expected_revision()
    if revision != head:
        return error_response(
            503,
            "not_migrated",
            f"The database is at revision {revision}, not {head}",
        )
    return web.json_response({"status": "ready", "revision": revision})
