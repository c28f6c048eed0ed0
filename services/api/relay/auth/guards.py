"""Who is calling: the checks every protected handler starts with."""

from aiohttp import web

from relay.auth.bearer import bearer_token
from relay.auth.tokens import TokenError, UserIdentity, is_agent_token
from relay.errors import Unauthorized
from relay.keys import USER_TOKENS


def require_user(request: web.Request) -> UserIdentity:
    token = bearer_token(request)
    if is_agent_token(token):
        raise Unauthorized("An agent token cannot act as a user")

    try:
        return request.app[USER_TOKENS].verify(token)
    except TokenError as exc:
        raise Unauthorized(f"The {exc}") from None
