"""Domain errors, and the one place they become HTTP answers."""

import asyncio
import logging

import aiohttp_jinja2
from aiohttp import web
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

log = logging.getLogger(__name__)


class RelayError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, code: str | None = None, **details) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details


class InvalidInput(RelayError):
    status = 400
    code = "invalid_field"


class Unauthorized(RelayError):
    status = 401
    code = "unauthorized"


class Forbidden(RelayError):
    status = 403
    code = "forbidden"


class NotFound(RelayError):
    status = 404
    code = "not_found"


class Conflict(RelayError):
    status = 409
    code = "conflict"


class NotLoggedIn(Exception):
    """A page asked for without a valid session: the person logs in first."""


class Unavailable(RelayError):
    status = 503
    code = "unavailable"


def error_response(status: int, code: str, message: str, **details) -> web.Response:
    body = {"error": code, "message": message, **details}
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return web.json_response(body, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Answer every API failure as JSON {"error", "message"}; pages as pages."""
    if request.path.startswith("/ui/"):
        return await _page_errors(request, handler)
    return await _api_errors(request, handler)


async def _page_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except NotLoggedIn:
        raise web.HTTPSeeOther("/ui/login") from None
    except RelayError as exc:
        return _page(request, exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _page(request, exc.status, exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _page(request, 500, "Something went wrong; the relay's log says what.")


def _page(request: web.Request, status: int, message: str) -> web.Response:
    context = {"identity": None, "status": status, "message": message}
    return aiohttp_jinja2.render_template("error.html", request, context, status=status)


async def _api_errors(request: web.Request, handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except RelayError as exc:
        return error_response(exc.status, exc.code, exc.message, **exc.details)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, _code(exc.reason), exc.reason)
    except (OperationalError, PoolTimeoutError, ConnectionError, OSError) as exc:
        log.warning(
            "database unavailable on %s %s: %s", request.method, request.path, exc
        )
        return error_response(
            503, "database_unavailable", "The database is unavailable"
        )
    except IntegrityError:
        # A constraint the handler did not expect to meet (a row removed
        # meanwhile, say): the request conflicts with the data; nothing changed.
        log.warning("constraint refused %s %s", request.method, request.path)
        return error_response(409, "conflict", "The request conflicts with the data")
    except DBAPIError as exc:
        if exc.connection_invalidated:
            return error_response(
                503, "database_unavailable", "The database is unavailable"
            )
        log.exception("database error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "Internal server error")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", "Internal server error")


def _code(reason: str) -> str:
    return reason.lower().replace(" ", "_").replace("-", "_")
