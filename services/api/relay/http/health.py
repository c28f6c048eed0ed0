"""Liveness and readiness, for load balancers and orchestrators."""

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from relay.db.schema import current_revision, expected_revision
from relay.errors import error_response
from relay.keys import DATABASE

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


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
