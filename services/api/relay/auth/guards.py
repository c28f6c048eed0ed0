"""Who is calling: the checks every protected handler starts with."""

from aiohttp import web

from relay.auth.tokens import TokenError, UserIdentity, is_agent_token
from relay.errors import Unauthorized
from relay.keys import USER_TOKENS

BEARER = "bearer "


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    if header[: len(BEARER)].lower() != BEARER:
        raise Unauthorized("A bearer token is required")

    token = header[len(BEARER) :].strip()
    if not token:
        raise Unauthorized("A bearer token is required")
    return token


def require_user(request: web.Request) -> UserIdentity:
    token = bearer_token(request)
    if is_agent_token(token):
        raise Unauthorized("An agent token cannot act as a user")

    try:
        return request.app[USER_TOKENS].verify(token)
    except TokenError as exc:
        raise Unauthorized(f"The {exc}") from None
