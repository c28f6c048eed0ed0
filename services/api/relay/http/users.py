"""People: registration, login, and the protected greeting."""

import logging
import re

from aiohttp import web

from relay.auth.guards import require_user
from relay.errors import InvalidInput, Unauthorized
from relay.http.bodies import read_object, string_field
from relay.keys import DATABASE, PASSWORDS, USER_TOKENS
from relay.store.users import create_user, find_login

log = logging.getLogger(__name__)

USERNAME = re.compile(r"[A-Za-z0-9._-]{3,64}")
PASSWORD_MIN_CHARACTERS = 8
# bcrypt reads at most 72 bytes; a longer password is refused rather than cut.
PASSWORD_MAX_BYTES = 72

routes = web.RouteTableDef()


@routes.post("/users")
async def register(request: web.Request) -> web.Response:
    body = await read_object(request)
    username = _username(body)
    password = _password(body)

    password_hash = await request.app[PASSWORDS].hash(password)
    async with request.app[DATABASE].write() as connection:
        user = await create_user(connection, username, password_hash)

    log.info("user %s registered as %s", user.id, user.username)
    return web.json_response(user.public(), status=201)


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    body = await read_object(request)
    username = string_field(body, "username")
    password = string_field(body, "password")

    user = await check_password(request.app, username, password)
    if user is None:
        raise Unauthorized("Invalid username or password", code="invalid_credentials")

    token = request.app[USER_TOKENS].issue(user.id, user.username, user.is_admin)
    return web.json_response({"message": "Login successful", "token": token})


async def check_password(app: web.Application, username: str, password: str):
    """The user these credentials prove, or None; as slow for an unknown name."""
    async with app[DATABASE].read() as connection:
        found = await find_login(connection, username)

    user, password_hash = found if found else (None, None)
    if not await app[PASSWORDS].verify(password, password_hash):
        return None
    return user


@routes.get("/protected")
async def protected(request: web.Request) -> web.Response:
    identity = require_user(request)
    return web.json_response(
        {"message": f"Hello {identity.username}, you are authorized."}
    )


def _username(body: dict) -> str:
    username = string_field(body, "username")
    if not USERNAME.fullmatch(username):
        raise InvalidInput(
            "username must be 3 to 64 letters, digits, '.', '_' or '-'",
            field="username",
        )
    return username


def _password(body: dict) -> str:
    password = string_field(body, "password")
    if len(password) < PASSWORD_MIN_CHARACTERS:
        raise InvalidInput(
            f"password must be at least {PASSWORD_MIN_CHARACTERS} characters",
            field="password",
        )
    if len(password.encode("utf-8")) > PASSWORD_MAX_BYTES:
        raise InvalidInput(
            f"password must be at most {PASSWORD_MAX_BYTES} bytes in UTF-8",
            field="password",
        )
    if "\x00" in password:
        raise InvalidInput("password must not contain NUL", field="password")
    return password
